"""Durable background jobs: handlers by kind, run by ``JobRunner`` from rows in ``storage/jobs.py``."""

from mistral_gateway.jobs.context import JobCancelled, JobContext, JobFailed, LeaseLost
from mistral_gateway.jobs.handlers import Handler, HandlerRegistry, load_handler
from mistral_gateway.jobs.runner import JobRunner, RunnerOptions

__all__ = ["Handler", "HandlerRegistry", "JobCancelled", "JobContext", "JobFailed", "JobRunner", "LeaseLost",
           "RunnerOptions", "load_handler"]
