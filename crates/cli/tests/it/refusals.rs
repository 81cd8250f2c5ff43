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
