//! `package new`: a manifest made from the installer itself plans and applies as it is.

use std::path::Path;

use crate::common::{self, Scratch, code, stderr, stdout};

/// The manifest `package new` writes for the demo's stand-in installer, as docs/manifest.md
/// shows it.
const DEMO_MANIFEST: &str = "\
# A cumulative update for sfbpatch (docs/manifest.md).
# A label for people.
name = \"Skype for Business Server 2019 cumulative update 7.0.2046.553\"
# The build the update installs; verify checks Get-CsServerPatchVersion shows it.
version = \"7.0.2046.553\"
# A file on this machine (relative to this manifest), uploaded to each server.
installer = \"SkypeServerUpdateInstaller.exe\"
# The installer's SHA-256; stage-update refuses any other file.
sha256 = \"c30d976f4b3e363089ddb18e014b0eabc3ca71ab51f5466f351427d8097aa4fd\"
";

#[test]
fn the_build_comes_from_the_installer_s_version_resource() {
    let s = Scratch::new();
    let pe = sfbpatch_plan::sample_pe("7.0.2046.600".parse().unwrap());
    std::fs::create_dir(s.path().join("cu")).unwrap();
    std::fs::write(s.path().join("cu/SkypeServerUpdateInstaller.exe"), &pe).unwrap();

    let o = s.run(&[
        "package",
        "new",
        "cu/SkypeServerUpdateInstaller.exe",
        "--out",
        "cu/cu.toml",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "the manifest goes to the file");
    let sha = common::sha256sum(&s.path().join("cu/SkypeServerUpdateInstaller.exe"));
    assert_eq!(
        stderr(&o),
        format!(
            "wrote cu/cu.toml for cu/SkypeServerUpdateInstaller.exe 7.0.2046.600 (SHA-256 {sha})\n"
        )
    );
    let text = std::fs::read_to_string(s.path().join("cu/cu.toml")).unwrap();
    assert!(text.contains("version = \"7.0.2046.600\"\n"), "{text}");
    assert!(
        text.contains("installer = \"SkypeServerUpdateInstaller.exe\"\n"),
        "named relative to the manifest: {text}"
    );
    assert!(text.contains(&format!("sha256 = \"{sha}\"\n")), "{text}");

    // It plans and applies as it is, from another folder.
    let o = s.run(&["plan", "demo-topology.xml", "--package", "cu/cu.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    s.lab_init("lab", &[]);
    let o = s.run(&[
        "apply",
        "demo-topology.xml",
        "--package",
        "cu/cu.toml",
        "--lab",
        "lab",
        "--state",
        "state.db",
        "--yes",
        "--only",
        "se1.dublin.demo.example",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lab = s.lab_json("lab");
    let server = common::item(&lab, "servers", "fqdn", "se1.dublin.demo.example");
    assert_eq!(server["installed_build"], "7.0.2046.600");
}

#[test]
fn without_a_version_resource_the_flag_gives_the_build() {
    let s = Scratch::new();
    let o = s.run(&["package", "new", "SkypeServerUpdateInstaller.exe"]);
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: SkypeServerUpdateInstaller.exe has no version resource to read the build from: \
         give it with --version (for example --version 7.0.2046.553)\n"
    );

    let o = s.run(&[
        "package",
        "new",
        "SkypeServerUpdateInstaller.exe",
        "--version",
        "7.0.2046.553",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), DEMO_MANIFEST);
    assert_eq!(stderr(&o), "");

    // A flag that contradicts the file, a missing file.
    std::fs::write(
        s.path().join("new.exe"),
        sfbpatch_plan::sample_pe("6.0.9319.881".parse().unwrap()),
    )
    .unwrap();
    let o = s.run(&["package", "new", "new.exe", "--version", "6.0.9319.900"]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        "error: new.exe states version 6.0.9319.881, not 6.0.9319.900: check that it is the \
         update you mean, or leave out --version\n"
    );
    let o = s.run(&["package", "new", "none.exe", "--out", "none.toml"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with("error: cannot read installer none.exe: "),
        "{}",
        stderr(&o)
    );
    assert!(!s.path().join("none.toml").exists());
}

#[test]
fn the_documented_example_is_what_package_new_writes() {
    let doc = std::fs::read_to_string(common::repo().join("docs/manifest.md")).unwrap();
    assert!(
        doc.contains(&format!("```toml\n{DEMO_MANIFEST}```")),
        "docs/manifest.md must show the manifest package new writes"
    );
    let asset = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets")
            .join(name)
    };
    let o = common::bin()
        .current_dir(asset(""))
        .args([
            "package",
            "new",
            "SkypeServerUpdateInstaller.exe",
            "--version",
            "7.0.2046.553",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), DEMO_MANIFEST);
}
