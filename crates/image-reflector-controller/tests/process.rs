//! The binary as a process: help, flag errors, missing configuration, an unreachable API server.
//! Against the real API server: `tests/tests/controllers.rs`.

use runtime::features::REFLECTOR_GATES;
use runtime::flags::REFLECTOR_UPSTREAM_FLAGS;
use runtime::test_support as t;

const BIN: &str = env!("CARGO_BIN_EXE_image-reflector-controller");

#[test]
fn help_lists_every_upstream_flag_and_gate() {
    t::check_help(BIN, REFLECTOR_UPSTREAM_FLAGS, REFLECTOR_GATES);
}

#[test]
fn unknown_gate_and_unknown_flag_fail_with_usage() {
    t::check_flag_errors(BIN, "image-reflector-controller", "GitShallowClone");
}

#[test]
fn missing_kubeconfig_names_what_was_tried() {
    t::check_missing_kubeconfig(BIN);
}

#[test]
fn unreachable_api_server_keeps_running_unready_and_stops_on_sigterm() {
    t::check_unreachable_api_server(BIN);
}
