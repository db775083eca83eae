"""Read the tritonserver command line out of ``triton.command`` and ``triton.args``.

SuperSONIC passes Triton's options as one shell string (``command: [/bin/sh, -c]``). The string
is split with :mod:`shlex`, exactly as a POSIX shell would split words; it is never executed.
Anything a shell would do beyond running one command (``;``, ``&&``, pipes, redirections,
variable or command substitution) cannot be represented and is refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

_SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash", "/usr/bin/env sh"}
_OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", "<<", "(", ")", ";;", "|&", ">&", "<&"}
_TRITON = {"tritonserver", "/opt/tritonserver/bin/tritonserver"}


class ArgsProblem(ValueError):
    """The command line is not one tritonserver invocation we can read."""


@dataclass(frozen=True)
class Option:
    """One ``--name[=value]`` of the command line, as written (``value`` None: a bare flag)."""

    name: str
    value: str | None
    text: str


def _words(script: str) -> list[str]:
    # A backslash-newline is a line continuation for the shell; shlex would keep the newline.
    script = script.replace("\\\r\n", " ").replace("\\\n", " ")
    for word in script.split():
        if "$" in word or "`" in word:
            raise ArgsProblem(
                f"the shell string expands variables or commands ({word!r}): give the value itself"
            )
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError as exc:  # unclosed quote
        raise ArgsProblem(f"the shell string cannot be split into words: {exc}") from None
    for w in words:
        if w in _OPERATORS or (w and set(w) <= set(";&|<>()")):
            raise ArgsProblem(
                f"the shell string runs more than tritonserver ({w!r}): only one tritonserver "
                "command with its options can be imported"
            )
    return words


def command_line(command: list[str] | None, args: list[str] | None) -> list[str]:
    """The words of the Triton command: the shell string split, or command + args as given."""
    command = list(command or [])
    args = list(args or [])
    if (
        command[:2] in (["/bin/sh", "-c"], ["sh", "-c"], ["/bin/bash", "-c"], ["bash", "-c"])
        and len(command) == 2
    ):
        if not args:
            raise ArgsProblem("command is a shell (sh -c) but args gives no command string")
        if len(args) > 1:
            raise ArgsProblem(
                "with sh -c only the first args entry is the command; the others would become $0, $1 "
                "(remove them)"
            )
        return _words(args[0])
    if len(command) >= 3 and command[0] in _SHELLS and command[1] == "-c":
        return _words(command[2])
    return [*command, *args]


def options(words: list[str]) -> list[Option]:
    """The options of a tritonserver command line (``--x=y``, ``--x y`` and bare ``--x``)."""
    if not words:
        raise ArgsProblem("no command: triton.command and triton.args are both empty")
    program, rest = words[0], words[1:]
    if program not in _TRITON and not program.startswith("--"):
        raise ArgsProblem(
            f"the command is {program!r}, not tritonserver: only a tritonserver command line can be imported"
        )
    if program.startswith("--"):  # the image's entrypoint runs tritonserver; args are options only
        rest = words
    found: list[Option] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if not word.startswith("--") or word == "--":
            raise ArgsProblem(f"{word!r} is not a tritonserver option (options start with --)")
        name, eq, value = word[2:].partition("=")
        if eq:
            found.append(Option(name, value, word))
        elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            found.append(Option(name, rest[i + 1], f"{word} {rest[i + 1]}"))
            i += 1
        else:
            found.append(Option(name, None, word))
        i += 1
    return found
