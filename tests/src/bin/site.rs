//! The example site's manage command, built inside the test package so integration tests can
//! start it as a real process, with the test-only tasks of `celery_web_tests::tasks` and `interop_tasks` linked.

fn main() -> std::process::ExitCode {
    celery_web_tests::tasks::link();
    celery_web_tests::interop_tasks::link();
    example_site::manage::main()
}
