//! Compile tests of `#[task]`: accepted forms run, rejected forms fail with the messages in
//! `tests/ui/fail/*.stderr`. Bless new messages with
//! `TRYBUILD=overwrite cargo test -p celery-web-macros --test ui`, then read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
