use sfbpatch_plan::{Installer, ManifestErrorKind, parse_manifest};
use sfbpatch_topology::StoreKind;

const SHA: &str = "3F2A9C0D5B8E4F1A6C7D9E0B2A4C6E8F1A3B5C7D9E1F2A4B6C8D0E2F4A6B8C0D";

/// A valid manifest with `line` replacing the line that starts with the same key (or added).
fn with(line: &str) -> String {
    let key = line.split([' ', '=']).next().unwrap();
    let mut lines: Vec<String> = vec![
        "name = \"Skype for Business Server 2019 CU\"".to_string(),
        "version = \"7.0.2046.553\"".to_string(),
        "installer = \"cu/SkypeServerUpdateInstaller.exe\"".to_string(),
        format!("sha256 = \"{SHA}\""),
    ];
    match lines.iter().position(|l| l.starts_with(&format!("{key} "))) {
        Some(i) => lines[i] = line.to_string(),
        None => lines.push(line.to_string()),
    }
    lines.join("\n") + "\n"
}

/// The error message for `text`.
fn error(text: &str) -> String {
    parse_manifest(text, "package.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn a_valid_manifest() {
    let text = format!(
        "\u{feff}# Skype for Business Server 2019, CU\r\n\
         name = \"SfB 2019 CU\"\r\n\
         version = \"7.0.2046.553\"\r\n\
         installer = 'updates\\SkypeServerUpdateInstaller.exe'\r\n\
         sha256 = \"{SHA}\"\r\n\
         \r\n\
         [schema_versions]\r\n\
         user = \"15.13.27\"\r\n\
         monitoring = \"10.13.2\"\r\n"
    );
    let package = parse_manifest(&text, "package.toml").unwrap();
    assert_eq!(package.name, "SfB 2019 CU");
    assert_eq!(package.version.to_string(), "7.0.2046.553");
    assert_eq!(
        package.installer,
        Installer::Path(r"updates\SkypeServerUpdateInstaller.exe".to_string())
    );
    assert_eq!(package.sha256, SHA.to_ascii_lowercase());
    assert_eq!(
        package.schema_versions.into_iter().collect::<Vec<_>>(),
        [
            (StoreKind::User, "15.13.27".to_string()),
            (StoreKind::Monitoring, "10.13.2".to_string())
        ]
    );
}

#[test]
fn an_https_installer_is_a_url() {
    let package = parse_manifest(
        &with(
            "installer = \"https://download.example.com/cu/SkypeServerUpdateInstaller.exe?x=1%27\"",
        ),
        "m",
    )
    .unwrap();
    assert_eq!(
        package.installer,
        Installer::Url(
            "https://download.example.com/cu/SkypeServerUpdateInstaller.exe?x=1%27".into()
        )
    );
}

#[test]
fn a_short_sha256_names_line_column_and_field() {
    assert_eq!(
        error(&with("sha256 = \"abcdef012345\"")),
        "package.toml:4:11: sha256: expected 64 hexadecimal characters, found 12 [SFB-M003]"
    );
    let text = "name = \"x\"\nversion = \"7.0.2046.553\"\nsha256 = \"abcdef012345\"\n";
    assert_eq!(
        error(text),
        "package.toml:3:11: sha256: expected 64 hexadecimal characters, found 12 [SFB-M003]\n\
         package.toml: installer: required key is missing [SFB-M004]"
    );
}

#[test]
fn a_non_hex_sha256() {
    let bad = format!("{}g", &SHA[..63]);
    assert_eq!(
        error(&with(&format!("sha256 = \"{bad}\""))),
        "package.toml:4:11: sha256: expected 64 hexadecimal characters, found 'g' [SFB-M003]"
    );
}

#[test]
fn unknown_keys_are_named() {
    assert_eq!(
        error(&with("instaler = \"x.exe\"")),
        "package.toml:5:1: unknown key 'instaler' (known keys: name, version, installer, sha256, product, schema_versions) [SFB-M002]"
    );
    assert_eq!(
        error(&with("[schema_versions]\nusers = \"1.2\"")),
        "package.toml:6:1: schema_versions: unknown key 'users' (known keys: user, application, central-management, archiving, monitoring, persistent-chat, persistent-chat-compliance) [SFB-M002]"
    );
}

#[test]
fn missing_keys_are_named() {
    let text = "name = \"x\"\nversion = \"7.0.2046.553\"\ninstaller = \"a.exe\"\n";
    assert_eq!(
        error(text),
        "package.toml: sha256: required key is missing [SFB-M004]"
    );
    assert_eq!(
        error(""),
        "package.toml: name: required key is missing [SFB-M004]\n\
         package.toml: version: required key is missing [SFB-M004]\n\
         package.toml: installer: required key is missing [SFB-M004]\n\
         package.toml: sha256: required key is missing [SFB-M004]"
    );
}

#[test]
fn wrong_types_are_named() {
    assert_eq!(
        error(&with("version = 7.0")),
        "package.toml:2:11: version: expected a string, found float [SFB-M005]"
    );
    assert_eq!(
        error(&with("schema_versions = \"15.13\"")),
        "package.toml:5:19: schema_versions: expected a table of store names and versions, found string [SFB-M005]"
    );
    assert_eq!(
        error(&with("schema_versions = { user = 15 }")),
        "package.toml:5:28: schema_versions.user: expected a string, found integer [SFB-M005]"
    );
}

#[test]
fn plain_http_is_refused() {
    let err = parse_manifest(
        &with("installer = \"http://example.com/cu.exe\""),
        "package.toml",
    )
    .unwrap_err();
    assert!(matches!(err.kind, ManifestErrorKind::InsecureUrl(_)));
    assert_eq!(
        err.to_string(),
        "package.toml:3:14: installer: 'http://example.com/cu.exe' uses plain http, which is refused: give an https:// URL, or download the installer and give its path [SFB-M006]"
    );
}

#[test]
fn bad_installers() {
    assert_eq!(
        error(&with("installer = \"ftp://example.com/cu.exe\"")),
        "package.toml:3:14: installer: 'ftp://' URLs are not supported: give an https:// URL or a path [SFB-M003]"
    );
    assert_eq!(
        error(&with("installer = \"cu\\\\it's.exe\"")),
        "package.toml:3:14: installer: character \"'\" is not allowed in a path (no control characters or single quotes) [SFB-M003]"
    );
    assert_eq!(
        error(&with("installer = \"cu\\u2019s.exe\"")),
        "package.toml:3:14: installer: character '\u{2019}' is not allowed in a path (no control characters or single quotes) [SFB-M003]"
    );
    assert_eq!(
        error(&with("installer = \"a.exe\\nRemove-Item x\"")),
        "package.toml:3:14: installer: character U+000A is not allowed in a path (no control characters or single quotes) [SFB-M003]"
    );
    assert_eq!(
        error(&with("installer = \"https://example.com/it's.exe\"")),
        "package.toml:3:14: installer: character \"'\" is not allowed in a URL (percent-encode it) [SFB-M003]"
    );
    assert_eq!(
        error(&with("installer = \"https://user:pw@example.com/cu.exe\"")),
        "package.toml:3:14: installer: a URL with a user name or password is not allowed [SFB-M003]"
    );
    assert_eq!(
        error(&with("installer = \"\"")),
        "package.toml:3:14: installer: must not be empty: give a file on this machine (relative to the manifest), a UNC path or a path on the server, or an https:// URL [SFB-M003]"
    );
}

#[test]
fn bad_names_and_versions() {
    assert_eq!(
        error(&with("name = \"CU \\\"7\\\"\"")),
        "package.toml:1:9: name: character '\"' is not allowed (no control characters or quotes) [SFB-M003]"
    );
    assert_eq!(
        error(&with("name = \"  \"")),
        "package.toml:1:9: name: must not be empty [SFB-M003]"
    );
    assert_eq!(
        error(&with("version = \"7.0.2046\"")),
        "package.toml:2:12: version: '7.0.2046' is not a build number like 7.0.2046.553 (four numbers separated by dots) [SFB-M003]"
    );
    assert_eq!(
        error(&with("[schema_versions]\nuser = \"15.x\"")),
        "package.toml:6:9: schema_versions.user: \"15.x\" is not a schema version (numbers separated by dots, like \"15.13.27\") [SFB-M003]"
    );
}

#[test]
fn syntax_errors_carry_the_position() {
    assert_eq!(
        error("name = \"x\"\nversion = \n"),
        "package.toml:2:11: not valid TOML: string values must be quoted, expected literal string [SFB-M001]"
    );
    assert_eq!(
        error("version = 7.0.2046.553\n"),
        "package.toml:1:14: not valid TOML: invalid float, expected nothing [SFB-M001]"
    );
    let err = parse_manifest("name = \"a\"\nname = \"b\"\n", "p.toml").unwrap_err();
    assert_eq!(err.code(), "SFB-M001");
    assert_eq!(err.location.map(|l| l.line), Some(2));
}

#[test]
fn every_problem_in_the_file_is_reported() {
    let text = "zeta = 1\nname = \"\"\nversoin = \"7.0.2046.553\"\nsha256 = \"abc\"\n";
    let err = parse_manifest(text, "package.toml").unwrap_err();
    assert_eq!(
        err.code(),
        "SFB-M002",
        "the first problem in the file comes first"
    );
    assert_eq!(err.more.len(), 5);
    assert_eq!(
        err.to_string(),
        "package.toml:1:1: unknown key 'zeta' (known keys: name, version, installer, sha256, product, schema_versions) [SFB-M002]\n\
         package.toml:2:9: name: must not be empty [SFB-M003]\n\
         package.toml:3:1: unknown key 'versoin' (known keys: name, version, installer, sha256, product, schema_versions) [SFB-M002]\n\
         package.toml:4:11: sha256: expected 64 hexadecimal characters, found 3 [SFB-M003]\n\
         package.toml: version: required key is missing [SFB-M004]\n\
         package.toml: installer: required key is missing [SFB-M004]"
    );
}

#[test]
fn three_kinds_of_installer_source() {
    let installer = |line: &str| parse_manifest(&with(line), "m").unwrap().installer;
    // A file on the controller: relative or absolute, as the controller spells it.
    assert_eq!(
        installer("installer = \"cu/SkypeServerUpdateInstaller.exe\""),
        Installer::Path("cu/SkypeServerUpdateInstaller.exe".into())
    );
    assert_eq!(
        installer("installer = { file = 'C:\\pkg\\SkypeServerUpdateInstaller.exe' }"),
        Installer::Path(r"C:\pkg\SkypeServerUpdateInstaller.exe".into())
    );
    // A path on the server, used as written: UNC or drive letter, never joined to anything.
    assert_eq!(
        installer(r"installer = '\\files.contoso.com\updates\SkypeServerUpdateInstaller.exe'"),
        Installer::Server(r"\\files.contoso.com\updates\SkypeServerUpdateInstaller.exe".into())
    );
    assert_eq!(
        installer(r"installer = 'D:\updates\SkypeServerUpdateInstaller.exe'"),
        Installer::Server(r"D:\updates\SkypeServerUpdateInstaller.exe".into())
    );
    assert_eq!(
        installer(r"installer = { server = '\\fs\cu\a.exe' }"),
        Installer::Server(r"\\fs\cu\a.exe".into())
    );
    assert_eq!(
        installer("installer = { url = \"https://example.com/a.exe\" }"),
        Installer::Url("https://example.com/a.exe".into())
    );

    assert_eq!(
        error(&with("installer = { server = 'updates/a.exe' }")),
        "package.toml:3:25: installer: 'updates/a.exe' is not a UNC path (\\\\server\\share\\...) or an absolute path on the server (C:\\...) [SFB-M003]"
    );
    assert_eq!(
        error(&with("installer = { url = \"a.exe\" }")),
        "package.toml:3:22: installer: 'a.exe://' URLs are not supported: give an https:// URL or a path [SFB-M003]"
    );
    assert_eq!(
        error(&with(
            "installer = { file = \"a.exe\", url = \"https://example.com/a.exe\" }"
        )),
        "package.toml:3:13: installer: a table names exactly one kind of source: { file = \"...\" } (on this machine), { server = '...' } (a UNC path or a path on the server) or { url = \"https://...\" }; found 'file', 'url' [SFB-M003]"
    );
}

#[test]
fn the_product_line_is_stated_or_read_from_the_build() {
    use sfbpatch_topology::ProductLine;
    let package = parse_manifest(&with("version = \"6.0.9319.881\""), "m").unwrap();
    assert_eq!(package.product, None);
    assert_eq!(package.product_line(), Some(ProductLine::SfB2015));
    let package = parse_manifest(&with("product = \"2019\""), "m").unwrap();
    assert_eq!(package.product, Some(ProductLine::SfB2019));
    let package = parse_manifest(
        &format!(
            "{}product = \"sfb-2019\"\n",
            with("version = \"8.0.100.1\"")
        ),
        "m",
    )
    .unwrap();
    assert_eq!(package.product_line(), Some(ProductLine::SfB2019));
    assert_eq!(
        parse_manifest(&with("version = \"8.0.100.1\""), "m")
            .unwrap()
            .product_line(),
        None
    );
    assert_eq!(
        error(&with("product = \"2016\"")),
        "package.toml:5:12: product: '2016' is not a product line: give \"2013\", \"2015\" or \"2019\" (or lync-2013, sfb-2015, sfb-2019) [SFB-M003]"
    );
}

#[test]
fn a_generated_manifest_reads_back() {
    for line in [
        "installer = \"SkypeServerUpdateInstaller.exe\"",
        r"installer = '\\fs\cu\SkypeServerUpdateInstaller.exe'",
        "installer = \"https://example.com/a.exe\"",
        "product = \"2019\"",
    ] {
        let package = parse_manifest(&with(line), "m").unwrap();
        let text = sfbpatch_plan::manifest_text(&package);
        assert_eq!(parse_manifest(&text, "m").unwrap(), package, "{text}");
    }
}
