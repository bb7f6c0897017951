//! `#[pg_test]`s: units that run inside a real server with the extension loaded.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn start_creates_a_pending_run() {
        let (status, claimed) = Spi::get_two::<String, bool>(
            "SELECT status, claimed FROM workflow.start('demo', '{\"x\":1}', 'wf-1')",
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("PENDING"));
        assert_eq!(claimed, Some(true));
    }
}
