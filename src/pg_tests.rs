//! `#[pg_test]`s: units that run inside a real server with the extension preloaded. Each test
//! runs in one transaction. The error table and the psql surface live in tests/pg_regress.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: IntoDatum + FromDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).expect("query failed")
    }

    #[pg_test]
    fn a_new_run_is_pending_and_claimed() {
        let (status, claimed) =
            Spi::get_two::<String, bool>("SELECT status, claimed FROM workflow.start('unit', '{\"x\":1}', 'u-1')")
                .unwrap();
        assert_eq!(status.as_deref(), Some("PENDING"));
        assert_eq!(claimed, Some(true));
        assert_eq!(one::<i32>("SELECT last_step FROM workflow.runs WHERE workflow_id = 'u-1'"), Some(0));
    }

    #[pg_test]
    fn a_checkpoint_is_replayed_with_its_output() {
        Spi::run("SELECT workflow.start('unit', NULL, 'u-2')").unwrap();
        Spi::run("SELECT workflow.step_put('u-2', 1, 'fetch', '{\"rows\": 3}')").unwrap();
        let out = one::<pgrx::JsonB>("SELECT output FROM workflow.step_get('u-2', 1, 'fetch')").unwrap();
        assert_eq!(out.0, serde_json::json!({"rows": 3}));
        assert_eq!(one::<bool>("SELECT found FROM workflow.step_get('u-2', 2, 'next')"), Some(false));
        assert_eq!(one::<i32>("SELECT last_step FROM workflow.start('unit', NULL, 'u-2')"), Some(1));
    }

    #[pg_test]
    fn a_generated_id_is_a_uuid_v7() {
        let id = one::<String>("SELECT workflow_id FROM workflow.start('unit')").unwrap();
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
    }

    // The backend's run cache must not outlive a cancel made in the same transaction.
    #[pg_test(error = "workflow \"u-3\" is cancelled")]
    fn cancel_in_the_same_transaction_stops_the_next_step() {
        Spi::run("SELECT workflow.start('unit', NULL, 'u-3')").unwrap();
        Spi::run("SELECT workflow.step_put('u-3', 1, 'a')").unwrap();
        assert_eq!(one::<bool>("SELECT workflow.cancel('u-3')"), Some(true));
        Spi::run("SELECT workflow.step_put('u-3', 2, 'b')").unwrap();
    }

    #[pg_test(error = "workflow \"u-4\" is SUCCESS, not PENDING")]
    fn a_finished_run_takes_no_more_steps() {
        Spi::run("SELECT workflow.start('unit', NULL, 'u-4')").unwrap();
        Spi::run("SELECT workflow.step_put('u-4', 1, 'a')").unwrap();
        assert_eq!(one::<String>("SELECT workflow.finish('u-4', '1')").as_deref(), Some("SUCCESS"));
        Spi::run("SELECT workflow.step_put('u-4', 2, 'b')").unwrap();
    }

    #[pg_test]
    fn wait_returns_a_finished_run_at_once() {
        Spi::run("SELECT workflow.start('unit', NULL, 'u-5')").unwrap();
        Spi::run("SELECT workflow.fail('u-5', '{\"why\": \"test\"}')").unwrap();
        let (status, error) =
            Spi::get_two::<String, pgrx::JsonB>("SELECT status, error FROM workflow.wait('u-5')").unwrap();
        assert_eq!(status.as_deref(), Some("ERROR"));
        assert_eq!(error.unwrap().0, serde_json::json!({"why": "test"}));
    }

    #[pg_test]
    fn wake_slots_are_stable_and_spread() {
        let a = crate::wake::slot_of("run", "order-1");
        assert_eq!(a, crate::wake::slot_of("run", "order-1"));
        let distinct: std::collections::HashSet<usize> =
            (0..200).map(|i| crate::wake::slot_of("run", &format!("wf-{i}"))).collect();
        assert!(distinct.len() > 150, "200 ids share only {} slots", distinct.len());
    }

    #[pg_test]
    fn the_wake_board_exists_when_preloaded() {
        assert!(crate::wake::epoch(0).is_some());
    }
}
