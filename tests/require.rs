//! `UDP_REFLECTOR_REQUIRE` turns a skip into a failure that names what was
//! missing; without it, a skip stays a skip. Proved on a child run of this
//! very test binary whose only test needs something no host has.

mod common;

use std::process::{Command, Stdio};

use common::{skip, Need, REQUIRE_VAR};

/// More CPUs than any machine running these tests has.
const IMPOSSIBLE_CPUS: usize = 1 << 20;

/// Needs more CPUs than exist: it always skips, or fails under the variable.
#[test]
#[ignore = "a helper: run in a child by a_missing_requirement_fails_under_the_variable"]
fn needs_more_cpus_than_any_host_has() {
    if common::usable_cpus() < IMPOSSIBLE_CPUS {
        skip(
            Need::Cpus,
            format!(
                "needs {IMPOSSIBLE_CPUS} CPUs, has {}",
                common::usable_cpus()
            ),
        );
        return;
    }
    unreachable!("a host with {IMPOSSIBLE_CPUS} CPUs");
}

/// Runs the helper above in a child test process with `require` as the
/// variable's value (unset for `None`): (passed, its output).
fn run_helper(require: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
    cmd.args([
        "--exact",
        "needs_more_cpus_than_any_host_has",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    cmd.env_remove(REQUIRE_VAR).stdin(Stdio::null());
    if let Some(v) = require {
        cmd.env(REQUIRE_VAR, v);
    }
    let out = cmd.output().expect("running the test binary again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 passed") || text.contains("1 failed"),
        "the helper did not run exactly once: {text}"
    );
    (out.status.success(), text)
}

#[test]
fn a_missing_requirement_fails_under_the_variable() {
    let (passed, text) = run_helper(Some("uring,netns,cpus"));
    assert!(!passed, "a missing `cpus` passed although required: {text}");
    assert!(
        text.contains("REQUIRED `cpus` is missing") && text.contains("needs 1048576 CPUs"),
        "the failure does not name what was missing: {text}"
    );
}

#[test]
fn without_the_variable_a_missing_requirement_is_a_skip() {
    let (passed, text) = run_helper(None);
    assert!(passed, "{text}");
    assert!(
        text.contains("SKIPPED") && text.contains("`cpus`"),
        "{text}"
    );
    // Requiring other things only does not change that.
    let (passed, text) = run_helper(Some("uring,netns,tools"));
    assert!(passed, "{text}");
}

#[test]
fn an_unknown_requirement_name_is_an_error_not_a_silent_pass() {
    let (passed, text) = run_helper(Some("uring,netsn"));
    assert!(!passed, "{text}");
    assert!(
        text.contains("\"netsn\", which is no requirement"),
        "{text}"
    );
}
