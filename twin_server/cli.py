"""The ``twin-server`` command: serve, chat, check, init, eval, sweep, inbox, plugins, openapi.

Nothing heavy is imported at module level, so ``twin-server --help`` loads no
backend SDK.
"""

from __future__ import annotations

import sys

import click


def _build_app(**options):
    from twin_server.app import create_app
    from twin_server.errors import StartupError

    try:
        return create_app(**options)
    except StartupError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="twin-server")
def main() -> None:
    """twin-server: put a digital twin of yourself online."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--debug", is_flag=True, help="Flask debug mode (reloader and debugger; never in production).")
def serve(host: str, port: int, debug: bool) -> None:
    """Serve the twin with Flask's development server (use gunicorn in production)."""
    from twin_server.telemetry.logs import configure_logging
    from twin_server.app_state import EXTENSION_KEY

    configure_logging()
    app = _build_app()
    state = app.extensions[EXTENSION_KEY]
    backends = ", ".join(f"{kind}={name}" for kind, name in state.backends.names().items())
    click.echo(f"twin-server on http://{host}:{port}/  ({backends})")
    app.run(host=host, port=port, debug=debug, threaded=True, use_reloader=debug)


@main.command()
@click.option("--session", "session_id", default=None, help="Continue this session id.")
def chat(session_id: str | None) -> None:
    """Talk to the configured twin in the terminal (the same turn as POST /chat)."""
    from twin_server.app_state import EXTENSION_KEY
    from twin_server.errors import TwinError
    from twin_server.sessions import check_session_id, new_session_id
    from twin_server.turn.turn import TurnRequest

    app = _build_app()
    turns = app.extensions[EXTENSION_KEY].turns
    try:
        session_id = check_session_id(session_id) if session_id else new_session_id()
        persona = turns.persona()
    except TwinError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"You are talking to the twin of {persona.full_name} (session {session_id}). Ctrl-D to quit.")
    speaker = f"{persona.full_name.split()[0].lower()}> "
    while True:
        try:
            text = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo()
            return
        if not text.strip():
            continue
        reply = None
        try:
            reply = turns.prepare(TurnRequest(session_id, text)).stream()
            click.echo(speaker, nl=False)
            for piece in reply:
                click.echo(piece, nl=False)
            click.echo()
            result = reply.finish(complete=True)
            if result.sources:
                click.secho("sources: " + "; ".join(source.title for source in result.sources), dim=True)
            if result.history_saved is False:
                click.echo("(this turn could not be saved; see the log)", err=True)
        except TwinError as exc:
            if reply is not None:
                reply.finish(complete=False)
            click.echo(f"\n[error] {type(exc).__name__}: {exc}", err=True)


@main.command()
def check() -> None:
    """Validate the configuration, the persona and the backends; exit non-zero on any problem."""
    import logging

    from twin_server.app_state import EXTENSION_KEY

    # This command's report is its output: the backends' own log lines would say the same again.
    logging.disable(logging.CRITICAL)
    try:
        app = _build_app(warm_up=False)  # the persona is probed below, once, with its precise message
        state = app.extensions[EXTENSION_KEY]
        failures = 0
        for kind, name in state.backends.names().items():
            click.echo(f"{kind:8} {name}")
        def persona_line() -> str:
            persona = state.turns.persona()
            grounder = state.turns.grounder
            grounder.check(persona, "?")  # a core that fills TWIN_CONTEXT_TOKENS fails here, saying so
            core = grounder.view(persona).core_tokens
            return f"{persona.full_name} (its core takes ~{core} of {grounder.settings.context_tokens} tokens)"

        checks = {
            "persona": persona_line,
            "storage": lambda: f"{len(state.backends.storage.load('twin-server-check', 1))} messages in a probe session",
        }
        for label, probe in checks.items():
            try:
                click.echo(f"ok       {label}: {probe()}")
            except Exception as exc:  # report every failure, then exit non-zero
                failures += 1
                click.echo(f"FAILED   {label}: {type(exc).__name__}: {exc}", err=True)
    finally:
        logging.disable(logging.NOTSET)
    if failures:
        sys.exit(1)
    click.echo("all checks passed")


@main.command("eval")
@click.argument("cases_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--min-score", type=click.FloatRange(0, 1), default=None, help="Exit 1 when the score is below this.")
@click.option("--judge", is_flag=True, help="Also ask the configured LLM whether each reply is faithful to the persona.")
def evaluate(cases_file: str, output_format: str, min_score: float | None, judge: bool) -> None:
    """Run CASES_FILE (JSON Lines) through the same turn as POST /chat and score the replies."""
    import json

    from twin_server import evaluation
    from twin_server.app_state import EXTENSION_KEY
    from twin_server.turn.turn import TurnRequest
    from twin_server.types import Message, Prompt

    try:
        cases = evaluation.load_cases(cases_file)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    # The owner is not told about an eval's leads and questions: only the log notifier runs.
    state = _build_app(config_overrides={"NOTIFY": "log"}).extensions[EXTENSION_KEY]
    turns, owner = state.turns, state.owner

    def ask(session_id: str, text: str) -> str:
        return turns.run(TurnRequest(session_id, text)).response

    def judge_reply(question: str, response: str) -> str | None:
        persona = turns.persona()
        system = f"{turns.system_prompts.get(persona)}\n\n{evaluation.JUDGE_INSTRUCTIONS}"
        asked = Message("user", f"Visitor's question: {question}\n\nTwin's reply: {response}")
        return evaluation.verdict_of(state.backends.llm.complete(Prompt(system, (asked,), persona)))

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            filled = 30 * done // total
            click.echo(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", nl=done == total, err=True)

    def unanswered_recorded(session_id: str) -> bool:
        owner.delivery.drain(timeout=10)  # detected events are stored by the delivery worker
        return any(session_id in question.asks for question in owner.questions())

    def finished(session_id: str) -> None:  # an eval leaves no conversation and no owner event behind
        if owner is not None:
            owner.delivery.drain(timeout=10)
            owner.forget_session(session_id)
        state.backends.storage.delete(session_id)

    report = evaluation.run_cases(
        cases,
        ask,
        unanswered_recorded=unanswered_recorded if owner is not None else None,
        judge=judge_reply if judge else None,
        finished=finished,
        progress=progress,
    )
    click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False) if output_format == "json" else report.to_table())
    if min_score is not None and report.score < min_score:
        click.echo(f"score {report.score:.3f} is below --min-score {min_score:g}", err=True)
        sys.exit(1)


@main.command()
def init() -> None:
    """Create what the selected backends need (a DynamoDB table, an S3 bucket); does nothing when all exists."""
    from twin_server.errors import TwinError
    from twin_server.app_state import EXTENSION_KEY

    backends = _build_app().extensions[EXTENSION_KEY].backends
    done = []
    for kind, backend in backends.selected():
        name = backend.name
        provision = getattr(backend.backend, "provision", None)
        if provision is None:
            continue
        try:
            lines = provision()
        except TwinError as exc:
            raise click.ClickException(f"{kind} backend {name!r}: {exc}") from exc
        for line in lines:
            click.echo(f"{kind} {name}: {line}")
        done += lines
    if not done:
        click.echo("nothing to do: everything the selected backends need exists")


@main.command()
@click.option("--max-age", type=float, default=None,
              help="Erase sessions untouched for more than this many seconds [default: TWIN_SESSION_TTL].")
def sweep(max_age: float | None) -> None:
    """Erase expired conversations (TWIN_SESSION_TTL); run it from cron or a systemd timer."""
    from twin_server import config as settings
    from twin_server.errors import TwinError
    from twin_server.app_state import EXTENSION_KEY

    app = _build_app()
    store = app.extensions[EXTENSION_KEY].backends.storage
    try:
        max_age = max_age if max_age is not None else settings.get_int(app.config, "SESSION_TTL", minimum=1)
    except TwinError as exc:
        raise click.ClickException(str(exc)) from exc
    if max_age is None:
        raise click.UsageError("set TWIN_SESSION_TTL (seconds) or pass --max-age")
    sweeper = getattr(store.backend, "sweep", None)
    if sweeper is None:
        raise click.ClickException(
            f"the {store.name!r} store expires sessions by itself (for S3: a lifecycle rule, see docs/deploying.md)"
        )
    try:
        removed = sweeper(max_age)
        owner = app.extensions[EXTENSION_KEY].owner
        expired = owner.expire(max_age, lambda session_id: bool(store.load(session_id, 1)))
    except TwinError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"erased {removed} session(s) untouched for more than {max_age:g} s, "
               f"and the owner events of {expired} session(s) gone as long")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as GET /owner/leads and /owner/unanswered).")
@click.option("--retry", is_flag=True, help="First deliver again every event a notifier failed or never got.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Entries of each list.")
def inbox(as_json: bool, retry: bool, limit: int) -> None:
    """What your twin recorded for you: leads and unanswered questions."""
    from twin_server.owner.inbox import run

    run(_build_app(warm_up=False), as_json=as_json, retry=retry, limit=limit)


@main.command()
def openapi() -> None:
    """Print the OpenAPI document of the configured app (what GET /openapi.json serves)."""
    from twin_server.http.openapi import document_of, dumps

    click.echo(dumps(document_of(_build_app(warm_up=False))), nl=False)


@main.command("plugins")
def list_plugins() -> None:
    """List the discovered plugins and the backends each registers."""
    from twin_server.backends.building import collect_backends
    from twin_server.plugin_manager import get_plugin_manager, plugin_distributions

    pm = get_plugin_manager()
    problems: list[str] = []
    registries = collect_backends(pm, problems)
    dists = plugin_distributions(pm)
    by_plugin: dict[str, list[str]] = {}
    for kind, registry in registries.items():
        for registration in registry.registrations():
            by_plugin.setdefault(registration.plugin, []).append(f"{kind}:{registration.name}")
    for name, _plugin in sorted(pm.list_name_plugin()):
        source = dists.get(name, "registered in code")
        backends = ", ".join(by_plugin.get(name, [])) or "(no backends)"
        click.echo(f"{name}  [{source}]  {backends}")
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
