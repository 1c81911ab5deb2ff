"""Where a summary job runs: a model's on the worker thread, an extractive one over a local store in the turn's own."""

import threading

from twin_server.grounding.summary import ExtractiveSummary, LLMSummary, Summaries, SummaryWorker


class SummarisingLLM:
    summarises = True

    def complete(self, prompt):
        return "A summary."


class LocalStore:
    local = True


class RemoteStore:
    """A store without ``local`` (S3, DynamoDB, a third party's): its calls may wait on the network."""


def test_an_extractive_summary_over_a_local_store_is_made_in_the_calling_thread_else_on_the_worker():
    extractive = Summaries(LocalStore(), object(), window=4, every=2)
    remote = Summaries(RemoteStore(), object(), window=4, every=2)
    by_model = Summaries(LocalStore(), SummarisingLLM(), window=4, every=2)
    assert isinstance(extractive.summarise, ExtractiveSummary) and isinstance(remote.summarise, ExtractiveSummary)
    assert isinstance(by_model.summarise, LLMSummary)
    threads = {}
    for name, summaries in (("extractive", extractive), ("remote", remote), ("model", by_model)):
        summaries.worker.submit("sess-1", lambda name=name: threads.setdefault(name, threading.get_ident()),
                                here=summaries.here)
        assert summaries.worker.drain(5)
    assert threads["extractive"] == threading.get_ident()
    assert threads["remote"] != threading.get_ident()
    assert threads["model"] != threading.get_ident()


def test_the_filesystem_store_behind_the_core_retry_says_it_is_local(tmp_path):
    from twin_server.app import create_app

    app = create_app({"DATA_DIR": str(tmp_path)})
    assert app.extensions["twin_server"].turns.summaries.here is True


def test_a_job_under_way_here_keeps_a_second_for_the_same_session_out():
    worker = SummaryWorker()
    answers = []
    worker.submit("sess-1", lambda: answers.append(worker.submit("sess-1", lambda: answers.append("ran"), here=True)),
                  here=True)
    assert answers == [False]
    assert worker.submit("sess-1", lambda: answers.append("later"), here=True) and answers == [False, "later"]


def test_a_failing_job_here_is_logged_and_frees_its_session(caplog):
    worker = SummaryWorker()
    assert worker.submit("sess-1", lambda: 1 / 0, here=True)
    assert "the summary of session sess-1 failed" in caplog.text
    assert worker.drain(0.1)
