SELECT workflow_id AS wid FROM workflow.start('bench', '{"n": 1}', NULL, 'bench-fenced') \gset
SELECT workflow.step_put(:wid, 1, 'step', '{"i": 1}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 2, 'step', '{"i": 2}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 3, 'step', '{"i": 3}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 4, 'step', '{"i": 4}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 5, 'step', '{"i": 5}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 6, 'step', '{"i": 6}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 7, 'step', '{"i": 7}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 8, 'step', '{"i": 8}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 9, 'step', '{"i": 9}', NULL, 'bench-fenced');
SELECT workflow.step_put(:wid, 10, 'step', '{"i": 10}', NULL, 'bench-fenced');
SELECT workflow.finish(:wid, '{"ok": true}', 'bench-fenced');
