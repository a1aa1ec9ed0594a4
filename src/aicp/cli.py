"""The ``aicp`` command line: parse arguments, dispatch, and map every error to its exit code.

Start-up time matters (people run ``aicp --version`` and ``validate`` in
loops and hooks), so this module imports nothing at the top but the signal
routing and the version (not even ``__future__``: annotations are strings);
argparse, the errors and each command are imported when needed.
"""

import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing cost 'aicp --version' ~3 ms
if TYPE_CHECKING:
    from typing import Any, Callable, Collection, NoReturn, Sequence

from aicp import _interrupt
from aicp._version import __version__

if TYPE_CHECKING:
    from aicp._commands.report import Invocation

DESCRIPTION = """\
Run multi-step content pipelines ("chains", YAML or JSON) with every step in its
own crash-isolated, supervised worker process. Progress is a structured event
stream: with --stream, one JSON object per line on stderr and the final result
as one JSON line on stdout."""

EXAMPLES = """\
examples:
  aicp run-chain --config examples/prompt_to_video.yaml --stream 2>progress.jsonl | jq .outputs
  aicp run-chain --config chain.yaml --resume          # continue the latest run of chain.yaml
  aicp validate --config chain.yaml
  aicp estimate-cost --config chain.yaml
  aicp runs list --config chain.yaml"""


# An option as this module declares it: (its flags, its metavar, its help). A metavar: it takes a value
# (None: a flag, store_true); argparse names it after its first flag ("--base-dir": base_dir).
if TYPE_CHECKING:
    Option = tuple[tuple[str, ...], "str | None", str]

# The options of the commands that only read a chain and print, each written once: build_parser
# declares them, and _plain_args reads a plain command line of these commands without argparse.
# Their value options (--config) are required.
CHAIN_FILE = (("--config", "-c"), "FILE", "the chain file (YAML or JSON); '-' reads it from stdin")
READ_ONLY: "dict[str, tuple[Option, ...]]" = {
    "validate": (CHAIN_FILE, (("--offline",), None, "do not check credentials (for CI of chain repositories)")),
    "estimate-cost": (CHAIN_FILE,),
}


def _global_options() -> "list[Option]":
    """--json/--quiet/--debug and the directories, accepted before or after the subcommand."""
    from aicp._commands.dirs import XDG_FLAGS

    options: "list[Option]" = [
        (("--json",), None, 'print one JSON envelope {"schema_version", "command", "data"} on stdout'),
        (("--quiet", "-q"), None, "print nothing but errors and the result"),
        (("--debug",), None, "print tracebacks for errors on stderr"),
        (("--base-dir",), "DIR", "relative output folders (the chain's output_dir, --output-dir) "
                                 "resolve against DIR instead of the current directory")]
    for name, variable in XDG_FLAGS.items():
        kept = ("only what it can rebuild, in aicp/ (parsed chains, ffmpeg's filters)" if name == "cache"
                else "nothing")
        options.append(((f"--{name}-dir",), "DIR", f"set {variable} for the run and its steps (the AI Content "
                                                   f"Pipeline tool's flag; aicp itself keeps {kept} there)"))
    return options


def _dest(option: "Option") -> str:
    return option[0][0].lstrip("-").replace("-", "_")


def _declare(parser: "Any", options: "tuple[Option, ...] | list[Option]", suppress: bool = False,
             required: bool = False) -> None:
    import argparse

    for flags, metavar, help_text in options:
        if metavar is None:
            parser.add_argument(*flags, action="store_true", default=argparse.SUPPRESS if suppress else False,
                                help=help_text)
        elif required:
            parser.add_argument(*flags, required=True, metavar=metavar, help=help_text)
        else:
            parser.add_argument(*flags, metavar=metavar, default=argparse.SUPPRESS if suppress else None,
                                help=help_text)


def _global_flags(parser: "Any", suppress: bool) -> None:
    _declare(parser.add_argument_group("global options"), _global_options(), suppress)


def _plain_values(args_list: "list[str]", command: str) -> "dict[str, Any] | None":
    """The options given on a plain command line of ``command`` by name; None if it is not plain."""
    before = {flag: option for option in _global_options() for flag in option[0]}
    after = {**before, **{flag: option for option in READ_ONLY[command] for flag in option[0]}}
    values: "dict[str, Any]" = {}
    known, index = before, 0
    while index < len(args_list):
        word = args_list[index]
        index += 1
        if word == command:
            known = after
            continue
        option = known.get(word)
        if option is None or _dest(option) in values:
            return None
        if option[1] is None:
            values[_dest(option)] = True
            continue
        if index == len(args_list) or (args_list[index].startswith("-") and args_list[index] != "-"):
            return None
        values[_dest(option)] = args_list[index]
        index += 1
    return values


class Arguments:
    """The parsed command line, as :func:`_plain_args` gives it (argparse's Namespace, without argparse)."""

    def __init__(self, **values: "Any") -> None:
        self.__dict__.update(values)


def _plain_args(args_list: "list[str]") -> "Arguments | None":
    """The arguments of a plain ``validate`` or ``estimate-cost`` command line, exactly as argparse
    gives them, without argparse (its import, gettext and locale, and building the parser: ~4 ms of a
    ~25 ms validate). Plain: the command once, each option spelled in full and given once (the
    command's own after it), a value as the next word (not starting with '-', but '-' itself).
    Anything else (help, an abbreviation, ``--opt=value``, ``-cFILE``, ``--``, a repeated or unknown
    option, a missing --config) is None, and argparse reads it, with its help and its errors."""
    commands = [word for word in args_list if word in READ_ONLY]
    if len(commands) != 1:
        return None
    command = commands[0]
    values = _plain_values(args_list, command)
    if values is None:
        return None
    own = READ_ONLY[command]
    if any(option[1] is not None and _dest(option) not in values for option in own):
        return None
    defaults = {_dest(option): None if option[1] else False for option in _global_options() + list(own)}
    return Arguments(**{**defaults, **values, "command": command})


def _usd(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an amount in USD, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be an amount >= 0, got {text!r}")
    return value


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size()`` gives it: $COLUMNS when it is a positive
    number, else the width of the terminal on stdout, else 80."""
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser(named: "Collection[str] | None" = None) -> "Any":
    """The parser of the command line. ``named``: the words on the command line; only the commands
    among them get their arguments declared (declaring all of them is most of the parser's cost,
    which ``aicp validate`` would pay on every call). Every command is still a choice with its help
    line, so ``aicp --help`` and a mistyped command read the same. None: every command."""
    import argparse

    from aicp._errors import EXIT_CODE_HELP, UsageError
    import os

    class Parser(argparse.ArgumentParser):  # subparsers inherit the class
        def error(self, message: str) -> "NoReturn":
            raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    class Formatter(argparse.RawDescriptionHelpFormatter):
        """argparse's, told the terminal's width: argparse would import shutil to ask (with bz2 and lzma,
        ~2 ms on every command line, as each declared argument makes a formatter)."""

        def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                     width: "int | None" = None) -> None:
            super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)

    formatter = Formatter
    parser = Parser(prog="aicp", description=DESCRIPTION,
                    epilog=f"{EXAMPLES}\n\n{EXIT_CODE_HELP}", formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"aicp {__version__}")
    _global_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, description: str = "") -> "Any":
        if named is not None and name not in named:
            sub.add_parser(name, help=help_text, add_help=False)  # listed, never parsed
            return None
        p = sub.add_parser(name, help=help_text, description=description or help_text,
                           epilog=EXIT_CODE_HELP, formatter_class=formatter)
        _global_flags(p, suppress=True)
        return p

    run = command("run-chain", "run a chain",
                  "Run a chain: each step in its own supervised worker process.\n"
                  "With --stream, lifecycle events go to stderr as JSON lines and the final\n"
                  "result is one JSON line on stdout (also when the chain is invalid).")
    if run is not None:  # named on the command line: its arguments are declared
        run.add_argument("--config", "-c", required=True, metavar="FILE",
                         help="the chain file (YAML or JSON); '-' reads it from stdin")
        run.add_argument("--input-text", metavar="TEXT", help="the chain's input text (instead of its prompt)")
        run.add_argument("--prompt-file", metavar="FILE", help="read the input text from FILE (--input-text wins)")
        run.add_argument("--input", metavar="FILE",
                         help="an input file (image, video, audio or text); '-' reads text from stdin "
                              "(wins over --input-text and --prompt-file, as in the old tool)")
        run.add_argument("--stream", action="store_true",
                         help="JSON events on stderr, the final result as one JSON line on stdout")
        run.add_argument("--log-file", metavar="PATH", help="also append every JSON event to PATH (any mode)")
        run.add_argument("--log-format", choices=("json", "ecs", "otel"), default=None,
                         help="the shape of the events on stderr and in --log-file: json (the v1 stream, the "
                              "default), ecs (Elastic Common Schema) or otel (OpenTelemetry log records); "
                              "default: $AICP_LOG_FORMAT, else json. stdout and the run record stay v1")
        run.add_argument("--output-dir", metavar="DIR", help="write outputs here instead of the chain's output_dir")
        run.add_argument("--no-confirm", "--yes", "-y", dest="no_confirm", action="store_true",
                         help="never ask before a run with a cost estimate above zero")
        run.add_argument("--max-cost", metavar="USD", type=_usd,
                         help="budget: a step whose estimate would take the run past it does not start "
                              "(exit 5, reason budget); overrides the chain's max_cost")
        run.add_argument("--save-json", metavar="FILE", help=argparse.SUPPRESS)  # deprecated in the old tool
        run.add_argument("--resume", nargs="?", const="latest", metavar="RUN_ID",
                         help="continue an earlier run of this chain (default: the latest): steps whose "
                              "definition, input and recorded outputs are unchanged are reused")
        run.add_argument("--run-id", metavar="ID",
                         help="name the run: create it with this id, or resume it if a run of this id exists "
                              "(letters, digits, '.', '_', '-')")
        run.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a top-level chain key for this run (VALUE is YAML: --set timeout=30); "
                              "repeatable")

    batch = command("run-batch", "run a chain over every row of a CSV or JSONL file",
                    "Run one chain over many inputs: a CSV (a 'prompt' column, or --column NAME; an optional\n"
                    "'id' column) or JSONL (one object per line: 'input' or 'prompt', an optional 'id', and\n"
                    "per-row overrides of the chain's top-level keys). Every row is checked before anything\n"
                    "runs. Each job is one 'aicp run-chain' with its own run record, under\n"
                    "output_dir/batches/BATCH_ID/; running the same command again continues the batch.\n"
                    "Exit 0 when every job succeeded, 5 when any failed (all are listed).")
    if batch is not None:
        batch.add_argument("--config", "-c", required=True, metavar="FILE", help="the chain file")
        batch.add_argument("--inputs", "-i", required=True, metavar="FILE", help="the rows: a .csv or .jsonl file")
        batch.add_argument("--column", metavar="NAME", help="the input column (CSV) or key (JSONL); default 'prompt'")
        batch.add_argument("--engine", choices=["local", "celery"], default="local",
                           help="local: N subprocesses on this machine (default); celery: queue the jobs for "
                                "'aicp worker' processes through Redis (--broker)")
        batch.add_argument("--jobs", "-j", type=int, metavar="N", help="jobs at a time (local engine; default: the CPU count)")
        batch.add_argument("--broker", metavar="URL", default=os.environ.get("AICP_BROKER_URL"),
                           help="the Redis URL of the fleet (celery engine; default $AICP_BROKER_URL)")
        batch.add_argument("--queue", metavar="NAME", default="aicp", help="the queue the jobs go to (celery engine)")
        batch.add_argument("--batch-id", metavar="ID", help="name the batch (default: from the chain and inputs files)")
        batch.add_argument("--resume", action="store_true", help="continue the batch (it must exist)")
        batch.add_argument("--max-cost", type=float, metavar="USD",
                           help="never start a job whose estimate would take the batch's spend past USD")
        batch.add_argument("--stream", action="store_true",
                           help="the merged JSON events on stderr, the batch_complete result as one line on stdout")
        batch.add_argument("--log-file", metavar="PATH", help="also append every JSON event to PATH")
        batch.add_argument("--output-dir", metavar="DIR", help="the batch folder's parent (default: the chain's output_dir)")
        batch.add_argument("--no-confirm", "--yes", "-y", dest="no_confirm", action="store_true",
                           help="never ask before a batch with a cost estimate above zero")

    worker = command("worker", "run batch jobs from a Redis queue (the fleet; needs aicp[celery])",
                     "A fleet worker: takes jobs that 'run-batch --engine celery' queued in Redis and runs\n"
                     "each as an 'aicp run-chain' subprocess. Outputs and run records must be on storage\n"
                     "that every worker shares at the same path. Stop it with SIGTERM (warm shutdown).")
    if worker is not None:
        worker.add_argument("--broker", metavar="URL", default=os.environ.get("AICP_BROKER_URL"),
                            help="the Redis URL: redis://HOST:PORT/DB (default $AICP_BROKER_URL)")
        worker.add_argument("--queues", "-Q", action="append", metavar="NAMES",
                            help="the queues to take jobs from, comma-separated (default: aicp)")
        worker.add_argument("--concurrency", type=int, metavar="N", help="jobs at a time (default: the CPU count)")
        worker.add_argument("--visibility-timeout", type=float, default=7200.0, metavar="SECONDS",
                            help="how long an unacknowledged job waits before Redis redelivers it; keep it at "
                                 "least twice your longest job (default 7200)")

    fleet_batch = command("batch", "look at or cancel a batch on the fleet (needs aicp[celery])")
    if fleet_batch is not None:
        batch_sub = fleet_batch.add_subparsers(dest="batch_command", metavar="ACTION", required=True)
        for action, text in (("status", "each job's status, attempts, cost and error"),
                             ("events", "the batch's events as JSON lines"),
                             ("cancel", "stop the batch: queued jobs do not start, running ones stop (resumable)")):
            p = batch_sub.add_parser(action, help=text, description=text)
            _global_flags(p, suppress=True)
            p.add_argument("batch_id", metavar="BATCH_ID")
            p.add_argument("--broker", metavar="URL", default=os.environ.get("AICP_BROKER_URL"),
                           help="the Redis URL (default $AICP_BROKER_URL)")
            if action == "events":
                p.add_argument("--follow", "-f", action="store_true", help="keep printing until every job has ended")

    validate = command("validate", "validate a chain and print its plan",
                       "Validate a chain without running it: every mistake at once, each as\n"
                       "FILE:LINE:COL: PATH: MESSAGE (sorted, at most 50 shown), then whether it\n"
                       "will run here (files it names, executors, credentials). Valid: print the\n"
                       "normalised plan (steps, types, models, timeouts, estimated cost).")
    if validate is not None:
        _declare(validate, READ_ONLY["validate"], required=True)

    steps = command("list-steps", "list the step types, what each takes and produces, and its executors")
    if steps is not None:
        steps.add_argument("--params", action="store_true",
                           help="also every executor's params: type, range or choices, default, required; "
                                "the old tool's params accepted and not used are marked")

    models = command("list-models", "list every model: its step type, provider, endpoint and price",
                     "List every model: its step type, provider, endpoint and price (USD per request).\n"
                     "fal models need FAL_KEY; AICP_FAL_QUEUE_URL replaces https://queue.fal.run\n"
                     "(a proxy, a test server) and AICP_FAL_REST_URL fal's storage host.")
    if models is not None:
        models.add_argument("--type", metavar="TYPE", help="only the models of this step type")
        models.add_argument("--params", action="store_true", help="also each model's params (as list-steps --params)")

    estimate = command("estimate-cost", "estimate what a chain will cost, step by step (no network)")
    if estimate is not None:
        _declare(estimate, READ_ONLY["estimate-cost"], required=True)

    runs = command("runs", "list or show the recorded runs (output_dir/runs/)")
    if runs is not None:
        runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
        for action, text in (("list", "list the recorded runs, newest first"), ("show", "show one run's record")):
            p = runs_sub.add_parser(action, help=text, description=text)
            _global_flags(p, suppress=True)
            if action == "show":
                p.add_argument("run_id", metavar="RUN_ID", help="a run id, or 'latest'")
            where = p.add_mutually_exclusive_group()
            where.add_argument("--config", "-c", metavar="FILE", help="the runs of this chain (its output_dir)")
            where.add_argument("--output-dir", metavar="DIR", default="output",
                               help="the output_dir whose runs/ to read (default: output)")

    view = command("view", "show a recorded or live events JSONL as the live view (or plain lines)",
                   "Show an events JSONL (a run's --stream stderr, its --log-file, or its record\n"
                   "output_dir/runs/<run_id>/events.jsonl) in the view run-chain shows people: live on a\n"
                   "terminal, plain lines elsewhere. Exits with the run's exit code when the stream\n"
                   "says how it ended.\n\n"
                   "  aicp run-chain --config chain.yaml --stream 2>&1 >/dev/null | aicp view\n"
                   "  aicp view output/runs/<run_id>/events.jsonl")
    if view is not None:
        view.add_argument("file", metavar="FILE", nargs="?", default="-",
                          help="the events JSONL; '-' (the default) reads stdin, as the events arrive")
        view.add_argument("--follow", "-f", action="store_true",
                          help="keep reading FILE as a run writes it, until the run ends")

    schema = command("schema", "print a JSON Schema (draft 2020-12): of the event stream, or of chain files",
                     "Print a JSON Schema (draft 2020-12).\n"
                     "  events: every event of the stream (--stream, --log-file)\n"
                     "  chain:  chain files, generated from the step types, models and params;\n"
                     "          save it and point your editor's YAML language server at it:\n"
                     "          aicp schema chain > chain.schema.json, then start a chain file with\n"
                     "          # yaml-language-server: $schema=chain.schema.json")
    if schema is not None:
        schema.add_argument("what", choices=["events", "chain"], help="which schema")
    return parser


def _dispatch(command: str, args: "Any") -> int:
    handlers: "dict[str, Callable[[Any], int]]" = {}
    if command == "run-chain":
        from aicp._commands.run_chain import run_chain_command

        handlers[command] = run_chain_command
    elif command == "view":
        from aicp._commands.view import view_command

        handlers[command] = view_command
    elif command == "run-batch":
        from aicp._commands.run_batch import run_batch_command

        handlers[command] = run_batch_command
    elif command in ("worker", "batch"):
        from aicp._commands import fleet as fleet_commands

        handlers.update({"worker": fleet_commands.worker_command, "batch": fleet_commands.batch_command})
    elif command == "runs":
        from aicp._commands.runs import runs_command

        handlers[command] = runs_command
    elif command in ("validate", "estimate-cost"):
        from aicp._commands import plan

        handlers.update({"validate": plan.validate, "estimate-cost": plan.estimate_cost})
    else:
        from aicp._commands import catalogue

        handlers.update({"list-steps": catalogue.list_steps, "list-models": catalogue.list_models,
                         "schema": catalogue.schema})
    return handlers[command](args)


def main(argv: "Sequence[str] | None" = None) -> "NoReturn":
    """The ``aicp`` command. ``argv`` None: the process's own arguments, and the process ends
    with this call; else (a test, a host program) nothing process-wide outlives it."""
    _interrupt.install()  # first: a signal while the chain loads still gets its result line
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list == ["--version"]:  # the hot path: no argparse, no imports
        try:
            if sys.stdout is not None:  # None when started with stdout closed (>&-)
                sys.stdout.write(f"aicp {__version__}\n")
        except (OSError, ValueError):
            pass
        _interrupt.release(process_ends=argv is None)
        _flush_stdout()
        raise SystemExit(0)
    import gc  # a built-in module, but not loaded by a bare start: after the --version path

    collecting = gc.isenabled()
    gc.disable()  # until the command is known: see _end_collection
    invocation, signalled = _invocation(args_list)
    try:
        from aicp._errors import AicpError, ExitCode  # loaded with the invocation: a lookup

        if signalled is not None:
            raise signalled
        try:
            code = _parse_and_run(args_list, invocation, collecting)
            _interrupt.hold()
        except AicpError as exc:
            code = _failed(invocation, exc.message, exc.exit_code, reported=exc.reported,
                               problems=getattr(exc, "problems", None))
        except KeyboardInterrupt:
            code = _failed(invocation, "interrupted", ExitCode.INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, reported as such
            code = _failed(invocation, f"internal error: {type(exc).__name__}: {exc} "
                           "(run with --debug for the traceback)", ExitCode.INTERNAL)
    except _interrupt.Signalled as exc:  # also one that came while another failure was being told
        code = _failed(invocation, exc.message, exc.exit_code)
    _interrupt.release(process_ends=argv is None)
    _flush_stdout()
    _end_collection(collecting, process_ends=argv is None)
    raise SystemExit(int(code))


# The commands that run steps or follow a stream: long-lived, they keep the garbage collector on.
SUPERVISING = ("run-chain", "run-batch", "worker", "batch", "view")


def _end_collection(collecting: bool, process_ends: bool) -> None:
    """The other commands read, check and print, and run with the garbage collector off: what they
    make (the catalogue, the plan: thousands of objects) lives until they end, so collecting while
    it is made is wasted work (~1.5 ms of a validate that takes ~25). When the process ends now, what
    is left is frozen, so that the interpreter's last collection does not walk it all once more
    (~3 ms): the memory goes back with the process, and every output was flushed before this. A
    host that called ``main(argv)`` gets its collector back as it was."""
    import gc

    if process_ends and not gc.isenabled():
        gc.freeze()
    if collecting:
        gc.enable()


def _invocation(args_list: "list[str]") -> "tuple[Invocation, _interrupt.Signalled | None]":
    """What telling a failure needs, imported after the ``--version`` path (it loads ``enum``);
    a signal that comes meanwhile is returned, to be told once the means are there."""
    signalled = None
    while True:  # at most twice: after one Signalled the handler only notes signals
        try:
            from aicp._commands.report import Invocation

            return Invocation.guess(args_list), signalled
        except _interrupt.Signalled as exc:
            signalled = exc


def _parse_and_run(args_list: "list[str]", invocation: "Invocation", collecting: bool) -> int:
    from aicp._errors import ExitCode

    args: "Any" = _plain_args(args_list)
    if args is None:
        parser = build_parser(named=set(args_list))
        args = parser.parse_args(args_list)
        if not args.command:
            invocation.update(args)
            parser.print_help(sys.stderr)
            return ExitCode.INVALID
    invocation.update(args)
    if collecting and args.command in SUPERVISING:
        import gc

        gc.enable()
    args.invocation = invocation  # run-chain marks when its result line is out
    if args.command != "run-chain":  # run-chain does it itself: its failures have a result line
        from aicp._commands.dirs import apply_directories

        apply_directories(args)
    return _dispatch(args.command, args)


def _failed(invocation: "Invocation", message: str, exit_code: int, reported: bool = False,
            problems: "list[Any] | None" = None) -> int:
    """Tell a failure once, in the form the invocation asked for; a signal now changes nothing.
    ``reported``: the command already ended its stream with this failure."""
    _interrupt.hold()
    trace = None
    if invocation.debug:
        import traceback

        trace = traceback.format_exc()
    invocation.fail(message, int(exit_code), trace, reported=reported, problems=problems)
    return int(exit_code)


def _flush_stdout() -> None:
    """Drain aicp's own stdio sinks, so that a host calling ``main(argv)`` sees our output before
    its own, then flush stdout; if the reader went away (``| head``), say nothing and keep the exit code."""
    import os

    sinks = sys.modules.get("aicp._sink")  # never imported on the --version path
    if sinks is not None:
        sinks.flush_stdio()
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
