SELECT workflow_id AS wid FROM workflow.dequeue(:queue, 'bench-' || :client_id) \gset
SELECT workflow.finish(:wid);
