//! `make demo` in its short form (`DEMO_SHORT=1 hack/demo.sh`), against the running test environment: the
//! guide's objects become Ready, the automation pushes the 5.0.0 -> 5.0.3 commit, and after 5.0.4 is pushed
//! the next commit arrives.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use e2e::{controller_binary, repo_root};

#[test]
fn the_short_demo_shows_status_and_both_commits() -> Result<()> {
    let reflector = std::path::PathBuf::from(controller_binary("image-reflector-controller")?);
    let bin_dir = reflector.parent().context("binary dir")?;
    // The environment the test harness found (process environment or target/testenv/env).
    let admin = e2e::testenv_var(e2e::KUBECONFIG_ADMIN)?;
    let testenv_dir = std::path::Path::new(&admin)
        .parent()
        .and_then(std::path::Path::parent)
        .context("TESTENV_KUBECONFIG is not inside $TESTENV_DIR/kube")?;
    let out = Command::new(repo_root().join("hack/demo.sh"))
        .env("DEMO_SHORT", "1")
        .env("DEMO_BIN_DIR", bin_dir)
        .env("TESTENV_DIR", testenv_dir)
        .output()
        .context("running hack/demo.sh")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "DEMO_SHORT=1 hack/demo.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for want in [
        "NAME",
        "imagepolicy.image.toolkit.fluxcd.io/podinfo",
        "-          image: ",
        "podinfo:5.0.0 # {\"$imagepolicy\":",
        "+          image: ",
        "podinfo:5.0.3 # {\"$imagepolicy\":",
        "podinfo:5.0.4 # {\"$imagepolicy\":",
        "Demo complete",
    ] {
        ensure!(
            stdout.contains(want),
            "the demo output lacks {want:?}:\n{stdout}"
        );
    }
    Ok(())
}
