//! What is refused before anything is recorded or created: a state store that is not there, a
//! package of another product line or older than a server's build, an installer that is missing
//! or not the manifest's file.

use crate::common::{Scratch, code, stderr, stdout};

#[test]
fn status_report_and_resume_without_a_store_say_so_and_create_nothing() {
    let s = Scratch::new();
    for args in [
        &["status", "--state", "nowhere.db"][..],
        &["status", "--state", "nowhere.db", "--format", "json"],
        &["report", "--state", "nowhere.db", "--html", "r.html"],
        &["report", "--state", "nowhere.db", "--format", "json"],
        &["resume", "--state", "nowhere.db"],
        &["approve", "1", "--state", "nowhere.db"],
        &[
            "unlock",
            "pool.example.com",
            "--state",
            "sqlite:nowhere.db",
            "--yes",
        ],
    ] {
        let o = s.run(args);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
        assert_eq!(
            stderr(&o),
            "error: there is no state store at nowhere.db: nothing has run with this --state \
             (give the --state of an earlier apply, or set SFBPATCH_STATE)\n",
            "{args:?}"
        );
        assert!(
            !s.path().join("nowhere.db").exists(),
            "{args:?} created the store"
        );
    }
    let left: Vec<_> = std::fs::read_dir(s.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("nowhere"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `apply` on a lab whose servers run a newer build, or another product line's, than the
/// package: refused before a run is recorded, naming the servers and builds.
#[test]
fn apply_refuses_a_downgrade_and_another_line_on_the_lab() {
    let s = Scratch::new();
    s.lab_init("newer", &["--build", "7.0.2046.600"]);
    let o = s.run(&crate::common::apply_args(
        &["--lab", "newer"],
        &["se1.dublin.demo.example"],
        &[],
    ));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: package Skype for Business Server 2019 CU8 HF1 (lab) 7.0.2046.553 is older than \
         what this server runs: se1.dublin.demo.example runs 7.0.2046.600; sfbpatch does not \
         downgrade [SFB-P011]\n"
    );
    assert!(!s.path().join("state.db").exists(), "nothing was recorded");

    s.lab_init("old-line", &["--build", "6.0.9319.0"]);
    let o = s.run(&crate::common::apply_args(
        &["--lab", "old-line"],
        &["se1.dublin.demo.example"],
        &[],
    ));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "but se1.dublin.demo.example (pool se1.dublin.demo.example, runs 6.0.9319.0) runs \
             Skype for Business Server 2015 (6.0.9319.*)"
        ) && stderr(&o).ends_with("[SFB-P010]\n"),
        "{}",
        stderr(&o)
    );
    assert!(!s.path().join("state.db").exists(), "nothing was recorded");
    let lab = s.lab_json("old-line");
    let server = crate::common::item(&lab, "servers", "fqdn", "se1.dublin.demo.example");
    assert_eq!(server["installer_runs"], 0);
}
