"""User-facing errors: one line naming the bad value and what is allowed; the CLI exits with code 2."""


class MupxError(Exception):
    """A problem with what the user asked for (bad flag, bad config, bad file), not a bug in mupx."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


def choose(kind: str, value: object, allowed) -> MupxError:
    """The standard 'unknown X' error: names the value and lists the allowed ones."""
    return MupxError(f"unknown {kind} {value!r} (allowed: {', '.join(str(a) for a in allowed)})")


class MupxFailure(MupxError):
    """What the user asked for ran but gave nothing to use (every run of a sweep diverged): one line,
    exit code 1, as a failing check."""

    exit_code = 1
