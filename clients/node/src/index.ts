/**
 * pg-workflow: durable workflows as ordinary TypeScript functions, checkpointed in PostgreSQL
 * by the pg_workflow extension. Same semantics and wire format as the Python SDK.
 */
export { App, defaultExecutorId } from "./app";
export type { AppOptions, EnqueueOptions, RunInfo, StartOptions, Workflow } from "./app";
export { stepId, workflowId } from "./context";
export {
  ConnectionLost, DuplicateWorkflow, ExtensionMissing, NondeterminismError, NotOwnerError, PgWorkflowError,
  SerializationError, StepFailed, UnknownQueue, WorkflowCancelled, WorkflowFailed, WorkflowNotRegistered, WorkflowTimeout,
} from "./errors";
export { WorkflowHandle } from "./handle";
export type { StepOptions } from "./steps";
export { Worker } from "./worker";
export type { WorkerOptions } from "./worker";
