"""storage.jobs: claims with leases, fencing by lease id, recovery of lapsed leases, cancel, workspace isolation."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mistral_gateway.storage.db import Database
from mistral_gateway.storage.jobs import JobRepository, JobStatus
from mistral_gateway.storage.tokens import TokenRepository

NOW = 1_700_000_000.0
LEASE = 30.0


@pytest.fixture
def jobs_db(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def repo(jobs_db: Database) -> JobRepository:
    return JobRepository(jobs_db)


@pytest.fixture
def ws(jobs_db: Database) -> str:
    return TokenRepository(jobs_db).ensure_workspace("default", int(NOW)).id


def test_claim_takes_the_oldest_job_of_the_kinds_asked_for(repo: JobRepository, ws: str) -> None:
    a = repo.enqueue(ws, "a", {"n": 1}, now=NOW)
    repo.enqueue(ws, "b", {"n": 2}, now=NOW - 10)
    later = repo.enqueue(ws, "a", {"n": 3}, now=NOW + 1)
    job = repo.claim("w1", ["a"], LEASE, NOW + 2)
    assert job is not None and job.id == a.id
    assert (job.status, job.worker_id, job.attempts, job.payload) == (JobStatus.RUNNING, "w1", 1, {"n": 1})
    assert job.lease_expires_at == NOW + 2 + LEASE and job.started_at == NOW + 2 and job.lease_id
    again = repo.claim("w2", ["a"], LEASE, NOW + 2)
    assert again is not None and again.id == later.id
    assert repo.claim("w3", ["a"], LEASE, NOW + 2) is None
    assert repo.claim("w3", [], LEASE, NOW + 2) is None
    assert repo.has_work(["b"], NOW + 2) and not repo.has_work(["a"], NOW + 2)


def test_writes_need_the_current_lease(repo: JobRepository, ws: str) -> None:
    repo.enqueue(ws, "k", {}, now=NOW)
    job = repo.claim("w1", ["k"], LEASE, NOW)
    assert job is not None and job.lease_id is not None
    assert repo.heartbeat(job.id, job.lease_id, LEASE, NOW + 20).owned
    assert not repo.heartbeat(job.id, "someone-else", LEASE, NOW + 20).owned
    assert repo.save_checkpoint(job.id, job.lease_id, {"done": 3}, NOW + 21)
    assert not repo.save_checkpoint(job.id, "someone-else", {"done": 99}, NOW + 21)
    assert not repo.finish(job.id, "someone-else", JobStatus.SUCCEEDED, NOW + 22)
    assert repo.finish(job.id, job.lease_id, JobStatus.SUCCEEDED, NOW + 22)
    done = repo.get(ws, job.id)
    assert done is not None
    assert (done.status, done.checkpoint, done.finished_at, done.lease_id) == (JobStatus.SUCCEEDED, {"done": 3},
                                                                               NOW + 22, None)
    assert not repo.heartbeat(job.id, job.lease_id, LEASE, NOW + 23).owned  # finished: nobody owns it
    with pytest.raises(ValueError, match="final status"):
        repo.finish(job.id, job.lease_id, JobStatus.RUNNING, NOW)


def test_the_heartbeat_keeps_the_lease_alive(repo: JobRepository, ws: str) -> None:
    repo.enqueue(ws, "k", {}, now=NOW)
    job = repo.claim("w1", ["k"], LEASE, NOW)
    assert job is not None and job.lease_id is not None
    for t in range(20, 200, 20):  # far past the first lease, renewed all along
        assert repo.heartbeat(job.id, job.lease_id, LEASE, NOW + t).owned
        assert repo.claim("w2", ["k"], LEASE, NOW + t + 1) is None


def test_a_lapsed_lease_requeues_the_job_with_its_checkpoint(repo: JobRepository, ws: str) -> None:
    repo.enqueue(ws, "k", {}, now=NOW)
    first = repo.claim("w1", ["k"], LEASE, NOW)
    assert first is not None and first.lease_id is not None
    repo.save_checkpoint(first.id, first.lease_id, {"done": 2}, NOW + 1)
    assert repo.claim("w2", ["k"], LEASE, NOW + LEASE - 1) is None  # still w1's
    second = repo.claim("w2", ["k"], LEASE, NOW + LEASE + 1)
    assert second is not None and second.id == first.id
    assert (second.worker_id, second.attempts, second.checkpoint) == ("w2", 2, {"done": 2})
    assert second.started_at == NOW  # the job started when it first ran
    # The first worker comes back to life: everything it writes is refused, so it stops.
    assert not repo.heartbeat(first.id, first.lease_id, LEASE, NOW + LEASE + 2).owned
    assert not repo.save_checkpoint(first.id, first.lease_id, {"done": 9}, NOW + LEASE + 2)
    assert not repo.release(first.id, first.lease_id, NOW + LEASE + 2)
    assert repo.get(ws, first.id).checkpoint == {"done": 2}  # type: ignore[union-attr]


def test_a_job_whose_worker_keeps_dying_fails_with_a_reason(repo: JobRepository, ws: str) -> None:
    job = repo.enqueue(ws, "k", {}, now=NOW, max_attempts=2)
    t = NOW
    for _ in range(2):
        assert repo.claim("w", ["k"], LEASE, t) is not None
        t += LEASE + 1  # the worker died: nobody renews the lease
    assert repo.claim("w", ["k"], LEASE, t) is None
    failed = repo.get(ws, job.id)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.error and "lease expired" in failed.error and failed.finished_at == t
    assert failed.worker_id is None and failed.lease_expires_at is None


def test_recovery_needs_no_worker_of_the_job_s_kind(repo: JobRepository, ws: str) -> None:
    """A job is never left RUNNING: any claim (or ``recover``) puts a dead worker's job back in the queue."""
    job = repo.enqueue(ws, "rare", {}, now=NOW)
    assert repo.claim("w1", ["rare"], LEASE, NOW) is not None
    assert repo.claim("w2", ["other"], LEASE, NOW + LEASE + 1) is None
    assert repo.get(ws, job.id).status == JobStatus.QUEUED  # type: ignore[union-attr]
    assert repo.claim("w3", ["rare"], LEASE, NOW + LEASE + 2) is not None
    assert repo.recover(NOW + 3 * LEASE) == 1
    assert repo.get(ws, job.id).status == JobStatus.QUEUED  # type: ignore[union-attr]


def test_cancel_a_queued_job_ends_it_at_once(repo: JobRepository, ws: str) -> None:
    job = repo.enqueue(ws, "k", {}, now=NOW)
    cancelled = repo.request_cancel(ws, job.id, NOW + 1)
    assert cancelled is not None and cancelled.status == JobStatus.CANCELLED and cancelled.finished_at == NOW + 1
    assert repo.claim("w", ["k"], LEASE, NOW + 2) is None


def test_cancel_a_running_job_reaches_its_heartbeat(repo: JobRepository, ws: str) -> None:
    repo.enqueue(ws, "k", {}, now=NOW)
    job = repo.claim("w", ["k"], LEASE, NOW)
    assert job is not None and job.lease_id is not None
    assert not repo.heartbeat(job.id, job.lease_id, LEASE, NOW + 1).cancel_requested
    flagged = repo.request_cancel(ws, job.id, NOW + 2)
    assert flagged is not None and flagged.status == JobStatus.RUNNING and flagged.cancel_requested
    beat = repo.heartbeat(job.id, job.lease_id, LEASE, NOW + 3)
    assert beat.owned and beat.cancel_requested
    assert repo.finish(job.id, job.lease_id, JobStatus.CANCELLED, NOW + 4)
    assert repo.request_cancel(ws, job.id, NOW + 5).status == JobStatus.CANCELLED  # type: ignore[union-attr]


def test_a_cancelled_job_whose_worker_died_ends_cancelled(repo: JobRepository, ws: str) -> None:
    repo.enqueue(ws, "k", {}, now=NOW)
    job = repo.claim("w", ["k"], LEASE, NOW)
    assert job is not None
    repo.request_cancel(ws, job.id, NOW + 1)
    assert repo.claim("w2", ["k"], LEASE, NOW + LEASE + 1) is None
    assert repo.get(ws, job.id).status == JobStatus.CANCELLED  # type: ignore[union-attr]


def test_release_requeues_without_spending_an_attempt(repo: JobRepository, ws: str) -> None:
    repo.enqueue(ws, "k", {}, now=NOW, max_attempts=1)
    job = repo.claim("w1", ["k"], LEASE, NOW)
    assert job is not None and job.lease_id is not None
    assert repo.release(job.id, job.lease_id, NOW + 1)
    again = repo.claim("w2", ["k"], LEASE, NOW + 2)
    assert again is not None and again.attempts == 1


def test_workspaces_see_only_their_jobs(repo: JobRepository, jobs_db: Database, ws: str) -> None:
    other = TokenRepository(jobs_db).ensure_workspace("other", int(NOW)).id
    mine = [repo.enqueue(ws, "k", {"i": i}, now=NOW + i) for i in range(3)]
    theirs = repo.enqueue(other, "k", {}, now=NOW)
    assert repo.get(other, mine[0].id) is None
    assert repo.request_cancel(other, mine[0].id, NOW) is None
    assert repo.get(ws, mine[0].id).status == JobStatus.QUEUED  # type: ignore[union-attr]
    listed, total = repo.list(ws, with_total=True, limit=2)
    assert [j.id for j in listed] == [mine[2].id, mine[1].id] and total == 3
    assert [j.id for j in repo.list(other)[0]] == [theirs.id]
    assert repo.list(ws, statuses=[JobStatus.RUNNING])[0] == []
    assert repo.list(ws, kind="nope")[0] == []


def test_two_workers_claiming_concurrently_never_share_a_job(database_url: str, ws: str,
                                                             repo: JobRepository) -> None:
    """Each worker has its own engine (as separate processes would); every job is claimed exactly once."""
    jobs = {repo.enqueue(ws, "k", {"i": i}, now=NOW + i).id for i in range(40)}
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def work(name: str) -> None:
        db = Database(database_url)
        mine = JobRepository(db)
        start.wait()
        try:
            while (job := mine.claim(name, ["k"], LEASE, NOW + 100)) is not None:
                claimed[name].append(job.id)
                assert job.lease_id is not None
                assert mine.finish(job.id, job.lease_id, JobStatus.SUCCEEDED, NOW + 101)
        finally:
            db.dispose()

    threads = [threading.Thread(target=work, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = claimed["a"] + claimed["b"]
    assert sorted(together) == sorted(jobs)  # all of them, none twice
    assert len(set(together)) == len(together)


def test_max_attempts_defaults_to_the_repository_s_and_must_be_positive(jobs_db: Database, ws: str) -> None:
    repo = JobRepository(jobs_db, max_attempts=5)
    assert repo.enqueue(ws, "k", {}, now=NOW).max_attempts == 5
    assert repo.enqueue(ws, "k", {}, now=NOW, max_attempts=1).max_attempts == 1
    with pytest.raises(ValueError, match="at least 1"):
        repo.enqueue(ws, "k", {}, now=NOW, max_attempts=0)
