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
            "error: there is no state store at sqlite:nowhere.db: the file does not exist: give \
             the --state of an earlier apply, or set SFBPATCH_STATE [SFB-S006]\n",
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

#[test]
fn an_empty_store_file_is_no_store_and_an_empty_one_beside_its_wal_is_damaged() {
    let s = Scratch::new();
    s.write("empty.db", "");
    for args in [
        &["status", "--state", "empty.db"][..],
        &["resume", "--state", "empty.db"],
        &["report", "--state", "empty.db", "--format", "json"],
    ] {
        let o = s.run(args);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            "error: there is no state store at sqlite:empty.db: the file holds no state store \
             (nothing has run with it): give the --state of an earlier apply, or set \
             SFBPATCH_STATE [SFB-S006]\n",
            "{args:?}"
        );
        // Left as found: no table was created in it.
        assert_eq!(
            std::fs::metadata(s.path().join("empty.db")).unwrap().len(),
            0
        );
    }

    // A store whose main file is empty while its write-ahead log holds data: damaged, and
    // neither file is touched (opening it would let SQLite drop the log).
    s.lab_init("lab", &[]);
    s.write("torn.db", "");
    s.write("torn.db-wal", "0123456789");
    for args in [
        &["status", "--state", "torn.db"][..],
        &["resume", "--state", "torn.db"],
        &[
            "apply",
            "demo-topology.xml",
            "--package",
            "demo-package.toml",
            "--lab",
            "lab",
            "--state",
            "torn.db",
            "--yes",
        ],
    ] {
        let o = s.run(args);
        assert_eq!(code(&o), 5, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "error: state store sqlite:torn.db is damaged: the database file is empty but its \
                 write-ahead log torn.db-wal holds 10 bytes; nothing was changed: restore the \
                 store from a backup (both files together) [SFB-S007]"
            ),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(
            std::fs::read(s.path().join("torn.db-wal")).unwrap(),
            b"0123456789"
        );
        assert_eq!(
            std::fs::metadata(s.path().join("torn.db")).unwrap().len(),
            0
        );
    }

    // Not a database at all: the store's own code.
    s.write("text.db", "this is not a database, not even close to one");
    let o = s.run(&["status", "--state", "text.db"]);
    assert_eq!(code(&o), 5);
    assert_eq!(
        stderr(&o),
        "error: cannot open state store sqlite:text.db: file is not a database [SFB-S001]\n"
    );
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
