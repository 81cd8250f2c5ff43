//! Faults inside the outage window: every one ends with the server safe and the truth told.
//! The lab world is the judge.

use serde_json::Value;

use crate::common::{self, NEW, Scratch, code, item, stderr};

const SE: &str = "se1.dublin.demo.example";

fn lab_with_faults(s: &Scratch, faults: &str) {
    s.write("faults.toml", faults);
    s.lab_init("lab", &["--faults", "faults.toml"]);
}

fn assert_se_patched(lab: &Value, fqdn: &str) {
    let s = item(lab, "servers", "fqdn", fqdn);
    assert_eq!(s["installed_build"], NEW, "{s}");
    assert_eq!(s["installer_runs"], 1, "{s}");
    assert_eq!(s["reboot_pending"], false, "{s}");
    assert_eq!(s["w3svc"], "running", "{s}");
    for svc in s["services"].as_array().unwrap() {
        assert_eq!(svc["state"], "running", "{s}");
        assert_eq!(svc["loaded_build"], NEW, "{s}");
    }
}

#[test]
fn a_crash_while_an_installer_asks_for_a_restart_still_gets_the_restart() {
    // Kill at every journal append of the server's procedure; the installer answers 3010.
    let mut n = 1;
    loop {
        let s = Scratch::new();
        lab_with_faults(
            &s,
            "[[fault]]\nserver = \"se1.dublin.demo.example\"\nstep = \"install-update\"\nexit_code = 3010\n",
        );
        let args = common::apply_args(&["--lab", "lab"], &[SE], &[]);
        let o = common::bin()
            .current_dir(s.path())
            .args(&args)
            .env(common::KILL_ENV, n.to_string())
            .output()
            .unwrap();
        if o.status.code() == Some(0) {
            assert!(n > 10, "the procedure has more commit points than {n}");
            break;
        }
        let r = s.run(&["resume", "--state", "state.db"]);
        assert_eq!(code(&r), 0, "resume after kill at {n}: {}", stderr(&r));
        assert_se_patched(&s.lab_json("lab"), SE);
        n += 1;
    }
}
