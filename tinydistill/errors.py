"""The one error type users see."""


class TinyDistillError(Exception):
    """A user-facing error; the CLI prints its one-line message and exits non-zero."""


def expected(kind: str = "float", minimum: float | None = None, above: float | None = None,
             below: float | None = None, maximum: float | None = None) -> str:
    """The words for a range: `expected("int", minimum=1)` -> "a whole number >= 1"."""
    what = "a whole number" if kind == "int" else "a number"
    if minimum is not None and below is not None:
        return f"{what} from {minimum:g} to below {below:g}"
    if minimum is not None and maximum is not None:
        return f"{what} from {minimum:g} to {maximum:g}"
    parts = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else "",
             f"< {below:g}" if below is not None else "", f"<= {maximum:g}" if maximum is not None else ""]
    return " ".join([what, *[p for p in parts if p]])


def check_number(name: str, value: object, kind: str = "float", minimum: float | None = None,
                 above: float | None = None, below: float | None = None, maximum: float | None = None,
                 optional: bool = False) -> None:
    """Raise a one-line `TinyDistillError` unless `value` is a finite number (a whole one for kind="int") in
    range; None passes when `optional`. Used by the configs' `__post_init__` and the CLI's option types."""
    if value is None and optional:
        return
    whole = isinstance(value, int) and not isinstance(value, bool)
    ok = whole if kind == "int" else (whole or isinstance(value, float))
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = v == v and abs(v) != float("inf") and (minimum is None or v >= minimum) \
            and (above is None or v > above) and (below is None or v < below) and (maximum is None or v <= maximum)
    if not ok:
        raise TinyDistillError(f"{name} is {value!r}; expected {expected(kind, minimum, above, below, maximum)}")
