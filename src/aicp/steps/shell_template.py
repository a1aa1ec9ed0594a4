"""Placeholders in a ``command`` step's shell string, passed as data and never as shell code.

``run: "echo '{input}'"`` with the input ``'; rm -rf ~; '`` must print that text,
not run it. Pasting a quoted value into the string cannot work in general: the
right quoting depends on where the placeholder sits (bare, inside '...', inside
"...", in a here-document, in ``$(...)``). So the value never enters the string.
It travels in an environment variable (``AICP_INPUT``, ``AICP_OUTPUT_DIR``,
``AICP_STEP``), and each placeholder is rewritten, once, into an expansion of
that variable that is correct in its quoting context:

=====================  =================  ==========================================
context                ``{input}`` becomes  why
=====================  =================  ==========================================
bare word              ``"$AICP_INPUT"``    one word: no splitting, no globbing
inside "..."           ``${AICP_INPUT}``    already quoted
inside '...'           ``'"$AICP_INPUT"'``  close the quote, expand, reopen
here-document body     ``${AICP_INPUT}``    expanded, never re-read as code
=====================  =================  ==========================================

``$(...)`` and backquote bodies are scripts of their own and are rewritten the
same way. Where no expansion can be correct the template is refused at
validation, with the position: inside ``$'...'``, in arithmetic (``$((...))``,
``((...))``, whose evaluation can run code in bash), in a quoted here-document
(``<<'EOF'``, which expands nothing), after a backslash in a bare word, and
``${input}`` (the shell's own variable syntax: ambiguous).

Whatever the parse, every replacement is balanced in quotes and is a plain
variable expansion, so even a construct this scanner reads differently from the
shell can at worst split or glob the value: it never runs it. What a program
does with its arguments is its own business (``sh -c {input}``, ``eval``).

The substitution is one pass: a value containing ``{output_dir}`` is data, and
is never substituted again (``argv`` and ``output`` use :func:`substitute`).
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{(input|output_dir|step)\}")
ENV_NAMES = {"input": "AICP_INPUT", "output_dir": "AICP_OUTPUT_DIR", "step": "AICP_STEP"}
_WORD_END = " \t\n;&|<>()"
_MAX_DEPTH = 64


class TemplateError(ValueError):
    """A placeholder where it cannot be passed as data; ``position`` is its offset in the string."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"at character {position + 1}: {message}")
        self.position = position


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace each placeholder by its value, in one pass (for ``argv`` and ``output``: no shell)."""
    return PLACEHOLDER.sub(lambda m: values[m[1]], text)


def shell_template(text: str) -> str:
    """``text`` with every placeholder rewritten into a quoted expansion of its variable.

    Raises :class:`TemplateError` for a placeholder that cannot be made safe where it is.
    """
    if not PLACEHOLDER.search(text):
        return text
    scanner = _Scanner(text)
    scanner.script(0, None, 0)
    return "".join(scanner.out)


def _var(match: re.Match[str]) -> str:
    return ENV_NAMES[match[1]]


class _Scanner:
    """A POSIX sh lexer just deep enough to know the quoting context of every placeholder."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.heredocs: list[tuple[str, bool, bool]] = []  # (delimiter, quoted, strip tabs)

    def _refuse(self, i: int, where: str, advice: str) -> TemplateError:
        name = PLACEHOLDER.match(self.text, i)
        shown = name[0] if name else "a placeholder"
        return TemplateError(i, f"{shown} is {where}, where it cannot be passed as data; {advice}")

    def _check_none(self, start: int, end: int, where: str, advice: str) -> None:
        found = PLACEHOLDER.search(self.text, start, end)
        if found:
            raise self._refuse(found.start(), where, advice)

    # ------------------------------------------------------------------ scripts

    def script(self, i: int, closer: str | None, depth: int) -> int:
        """A script (the whole string, a $(...) body): until ``closer`` at nesting 0, or the end.
        Returns the index of the closer (or len)."""
        if depth > _MAX_DEPTH:
            raise TemplateError(i, "is nested too deeply")
        text, out = self.text, self.out
        parens = 0
        word_start = True
        while i < len(text):
            c = text[i]
            match = PLACEHOLDER.match(text, i)
            if match:
                out.append(f'"${_var(match)}"')
                i, word_start = match.end(), False
                continue
            if c == closer and parens == 0:
                return i
            construct = self.bare_construct(i, depth, word_start)
            if construct is not None:
                i, word_start = construct
                continue
            if c in "()":
                parens += 1 if c == "(" else -1
            out.append(c)
            word_start = c in _WORD_END
            i += 1
        return i

    def bare_construct(self, i: int, depth: int, word_start: bool) -> tuple[int, bool] | None:
        """An escape, comment, newline, arithmetic, here-document, quote or expansion at ``i`` in
        a script: (where it ends, whether a word starts there); None for a plain character."""
        text, out = self.text, self.out
        c = text[i]
        if c == "\\":
            if PLACEHOLDER.match(text, i + 1):
                raise self._refuse(i + 1, "escaped by a backslash",
                                   "remove the backslash (the value is quoted for you)")
            out.append(text[i:i + 2])
            return i + 2, False
        if c == "#" and word_start:  # a comment: copied, its placeholders are inert
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out.append(text[i:end])
            return end, False
        if c == "\n":
            out.append(c)
            return self.heredoc_bodies(i + 1, depth), True
        if word_start and text.startswith("((", i):
            return self.arithmetic(i, 2), False
        if text.startswith("<<", i) and not text.startswith("<<<", i):
            return self.heredoc_operator(i), False
        after = self.quoted_or_expansion(i, depth, in_dq=False)
        return None if after is None else (after, False)

    def quoted_or_expansion(self, i: int, depth: int, in_dq: bool) -> int | None:
        """Handle a quote or a $-expansion starting at ``i``; return where it ends, or None."""
        text = self.text
        c = text[i]
        if c == "'" and not in_dq:
            return self.single_quoted(i)
        if c == '"' and not in_dq:
            return self.double_quoted(i, depth)
        if c == "`":
            return self.backquoted(i, depth, in_dq)
        if c != "$":
            return None
        if text.startswith("$'", i) and not in_dq:
            return self.ansi_c(i)
        if text.startswith("$((", i):
            return self.arithmetic(i, 3)
        if text.startswith("$(", i):
            self.out.append("$(")
            end = self.script(i + 2, ")", depth + 1)
            if end < len(text):
                self.out.append(")")
            return end + 1
        if text.startswith("${", i):
            return self.parameter(i, depth, in_dq)
        return None

    # ------------------------------------------------------------------ quotes

    def single_quoted(self, i: int) -> int:
        text = self.text
        end = text.find("'", i + 1)
        end = len(text) if end < 0 else end
        pos = i + 1
        self.out.append("'")
        for match in PLACEHOLDER.finditer(text, i + 1, end):
            self.out.append(text[pos:match.start()] + f"'\"${_var(match)}\"'")
            pos = match.end()
        self.out.append(text[pos:end + 1])
        return end + 1

    def double_quoted(self, i: int, depth: int) -> int:
        self.out.append('"')
        i = self.dq_body(i + 1, '"', depth)
        if i < len(self.text):
            self.out.append('"')
        return i + 1

    def dq_body(self, i: int, closer: str, depth: int) -> int:
        """The inside of "..." (or of an unquoted here-document, ``closer`` None): until ``closer``."""
        text, out = self.text, self.out
        while i < len(text):
            c = text[i]
            match = PLACEHOLDER.match(text, i)
            if match:
                out.append(f"${{{_var(match)}}}")
                i = match.end()
                continue
            if c == closer:
                return i
            if c == "\\":
                if PLACEHOLDER.match(text, i + 1):
                    out.append("\\\\")  # a literal backslash there; the value follows
                    i += 1
                else:
                    out.append(text[i:i + 2])
                    i += 2
                continue
            consumed = self.quoted_or_expansion(i, depth, in_dq=True)
            if consumed is not None:
                i = consumed
                continue
            out.append(c)
            i += 1
        return i

    def ansi_c(self, i: int) -> int:
        text = self.text
        j = i + 2
        while j < len(text) and text[j] != "'":
            j += 2 if text[j] == "\\" else 1
        end = min(j, len(text))
        self._check_none(i, end, "inside $'...' (ANSI-C quoting: bash reads it, /bin/sh may not)",
                         "put it outside the $'...' string")
        self.out.append(text[i:end + 1])
        return end + 1

    def backquoted(self, i: int, depth: int, in_dq: bool) -> int:
        text = self.text
        j = i + 1
        while j < len(text) and text[j] != "`":
            j += 2 if text[j] == "\\" else 1
        end = min(j, len(text))
        body = text[i + 1:end]
        if PLACEHOLDER.search(body) and ("\\" in body or (in_dq and '"' in body)):
            self._check_none(i, end, "inside `...` with backslashes or quotes (their meaning differs by shell)",
                             "write $(...) instead of backquotes")
        inner = _Scanner(body)
        inner_end = inner.script(0, None, depth + 1)
        self.out.append("`" + "".join(inner.out) + body[inner_end:] + ("`" if end < len(text) else ""))
        return end + 1

    def parameter(self, i: int, depth: int, in_dq: bool) -> int:
        """``${...}``: a name, maybe an operator and a word; the word is rewritten like its context."""
        text = self.text
        if PLACEHOLDER.match(text, i + 1):
            raise self._refuse(i + 1, "written ${...}, the shell's syntax for its own variables",
                               "write {input} alone, or \"$AICP_INPUT\"")
        if in_dq:  # "${x:-...}": quotes inside nest differently in bash and dash
            end = self._matching_brace(i + 2)
            self._check_none(i, end, 'inside "${...}"', "put it outside the ${...}")
            self.out.append(text[i:end + 1])
            return end + 1
        self.out.append("${")
        end = self.script(i + 2, "}", depth + 1)
        if end < len(text):
            self.out.append("}")
        return end + 1

    def _matching_brace(self, i: int) -> int:
        level = 1
        text = self.text
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            level += {"{": 1, "}": -1}.get(text[i], 0)
            if level == 0:
                return i
            i += 1
        return len(text)

    def arithmetic(self, i: int, opening: int) -> int:
        """``$((...))`` or ``((...))``: copied; a placeholder inside is refused (bash evaluates
        array subscripts there, and can run code named by the value)."""
        text = self.text
        level, j = 0, i + opening - 2
        while j < len(text):
            level += {"(": 1, ")": -1}.get(text[j], 0)
            if level == 0:
                break
            j += 1
        end = min(j, len(text))
        self._check_none(i, end, "inside arithmetic ((...))", "assign it to a variable first and check it")
        self.out.append(text[i:end + 1])
        return end + 1

    # ------------------------------------------------------------------ here-documents

    def heredoc_operator(self, i: int) -> int:
        """``<<WORD`` / ``<<-WORD``: remember the document, whose body starts after the next newline."""
        text = self.text
        j = i + 2
        strip = j < len(text) and text[j] == "-"
        j += 1 if strip else 0
        while j < len(text) and text[j] in " \t":
            j += 1
        start = j
        while j < len(text) and text[j] not in _WORD_END:
            if text[j] in "'\"":
                close = text.find(text[j], j + 1)
                j = len(text) if close < 0 else close + 1
            else:
                j += 2 if text[j] == "\\" else 1
        word = text[start:j]
        self._check_none(start, j, "in a here-document's delimiter", "use a plain word such as EOF")
        quoted = any(q in word for q in "'\"\\")
        delimiter = re.sub(r"\\(.)|['\"]", lambda m: m[1] or "", word)
        self.heredocs.append((delimiter, quoted, strip))
        self.out.append(text[i:j])
        return j

    def heredoc_bodies(self, i: int, depth: int) -> int:
        """After a newline: the bodies of the here-documents opened on the line that ended."""
        text = self.text
        while self.heredocs:
            delimiter, quoted, strip = self.heredocs.pop(0)
            start = i
            while i < len(text):
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                line = text[i:end]
                if (line.lstrip("\t") if strip else line) == delimiter:
                    break
                i = end + 1
            body_end = min(i, len(text))
            if quoted:
                self._check_none(start, body_end, "in a quoted here-document (<<'EOF' expands nothing)",
                                 "use an unquoted delimiter (<<EOF)")
                self.out.append(text[start:body_end])
            else:
                j = start
                while j < body_end:
                    j = self.dq_body(j, "\n", depth) if text[j] != "\n" else j
                    if j < body_end:
                        self.out.append("\n")
                        j += 1
            i = body_end
        return i
