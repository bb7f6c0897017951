"""The core SDK's public names (pg_workflow.App, workflow_id, sleep, ...), one place to import
them from while the core's __init__ is settling."""
try:
    from pg_workflow import App, recv, send, set_event, sleep, step_id, workflow_id  # noqa: F401
except ImportError:  # the core modules before pg_workflow/__init__.py re-exports them
    from pg_workflow.app import App  # noqa: F401
    from pg_workflow.context import step_id, workflow_id  # noqa: F401
    from pg_workflow.steps import recv, send, set_event, sleep  # noqa: F401
