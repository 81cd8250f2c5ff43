//! The project's own fixtures (`tests/fixtures/`): one deployment in all three formats, the
//! special cases, and one file per kind of bad input with its exact message.

use std::collections::BTreeSet;
use std::path::PathBuf;

use sfbpatch_topology::{
    DatabaseUpdate, Deployment, Edition, ErrorKind, ProductLine, SourceFormat, StoreKind,
    TopologyError, load, read_topology,
};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn text(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ok(name: &str) -> Deployment {
    load(&text(name), name).unwrap_or_else(|e| panic!("{e}"))
}

fn err(name: &str) -> TopologyError {
    match load(&text(name), name) {
        Ok(d) => panic!("{name} loaded: {d:?}"),
        Err(e) => e,
    }
}

fn stores(kinds: &[StoreKind]) -> BTreeSet<StoreKind> {
    kinds.iter().copied().collect()
}

/// What `fabrikam.*` must yield, in every format.
fn assert_fabrikam(d: &Deployment) {
    let summary: Vec<(&str, &str, Edition, usize, String, DatabaseUpdate)> = d
        .pools
        .iter()
        .map(|p| {
            (
                p.fqdn.as_str(),
                p.site.as_str(),
                p.edition,
                p.machines.len(),
                format!(
                    "{}\\{}",
                    p.backend.sql_server_fqdn,
                    p.backend.sql_instance.as_str()
                ),
                p.database_update,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "pool01.fabrikam.com",
                "Redmond",
                Edition::Enterprise,
                2,
                "sql01.fabrikam.com\\".to_string(),
                DatabaseUpdate::Configured
            ),
            (
                "pool02.fabrikam.com",
                "Redmond",
                Edition::Enterprise,
                2,
                "sql02.fabrikam.com\\rtc".to_string(),
                DatabaseUpdate::ConfiguredExcludeCollocated
            ),
            (
                "se01.fabrikam.com",
                "Dublin",
                Edition::Standard,
                1,
                "se01.fabrikam.com\\rtc".to_string(),
                DatabaseUpdate::Local
            ),
            (
                "pool03.fabrikam.com",
                "Dublin",
                Edition::Enterprise,
                3,
                "ag01.fabrikam.com\\".to_string(),
                DatabaseUpdate::Configured
            ),
        ]
    );

    assert!(
        d.pools
            .iter()
            .all(|p| p.product == Some(ProductLine::SfB2019)),
        "every fabrikam pool is Skype for Business Server 2019"
    );

    // The Monitoring store on another SQL server is not collocated.
    let pool01 = d.pool("POOL01.fabrikam.com").expect("pool01");
    assert_eq!(
        pool01.backend.stores,
        stores(&[
            StoreKind::User,
            StoreKind::Application,
            StoreKind::CentralManagement
        ])
    );
    assert!(pool01.backend.collocated_stores.is_empty());
    let sqlmon = d
        .sql_instance("sqlmon.fabrikam.com", "")
        .expect("monitoring server");
    assert_eq!(sqlmon.stores, stores(&[StoreKind::Monitoring]));

    let pool02 = d.pool("pool02.fabrikam.com").expect("pool02");
    assert_eq!(
        pool02.backend.collocated_stores,
        stores(&[StoreKind::Archiving, StoreKind::Monitoring])
    );

    let se01 = d.pool("se01.fabrikam.com").expect("se01");
    assert_eq!(
        se01.machines[0].upgrade_domain.as_deref(),
        Some("se01.fabrikam.com")
    );
    assert_eq!(se01.backend.machines, se01.machines);

    let pool03 = d.pool("pool03.fabrikam.com").expect("pool03");
    assert!(pool03.backend.always_on);
    assert_eq!(
        pool03
            .backend
            .always_on_primary
            .as_ref()
            .map(|f| f.as_str()),
        Some("sqlag01a.fabrikam.com")
    );
    let nodes: Vec<&str> = pool03
        .backend
        .machines
        .iter()
        .map(|m| m.fqdn.as_str())
        .collect();
    assert_eq!(nodes, ["sqlag01a.fabrikam.com", "sqlag01b.fabrikam.com"]);
    assert_eq!(
        pool03.machines[2].upgrade_domain.as_deref(),
        Some("UpgradeDomain3")
    );
    assert_eq!(d.pools_with_machine("SQLAG01B.fabrikam.com").count(), 1);
    assert!(d.pool("edge01.fabrikam.com").is_none());
    assert!(d.pools.iter().all(|p| p.backend.mirroring.is_none()));
}

#[test]
fn fabrikam_published() {
    let d = ok("fabrikam.xml");
    assert_eq!(d.format, SourceFormat::Published);
    assert_fabrikam(&d);
}

#[test]
fn fabrikam_topology_builder_with_bom_and_crlf() {
    let bytes = std::fs::read(fixture_path("fabrikam.tbxml")).unwrap();
    assert!(
        bytes.starts_with(b"\xef\xbb\xbf"),
        "stored with a byte order mark"
    );
    assert!(bytes.windows(2).any(|w| w == b"\r\n"), "stored with CRLF");
    let d = ok("fabrikam.tbxml");
    assert_eq!(d.format, SourceFormat::TopologyBuilder);
    assert_fabrikam(&d);
}

#[test]
fn fabrikam_inventory() {
    let d = ok("fabrikam.toml");
    assert_eq!(d.format, SourceFormat::Inventory);
    assert_fabrikam(&d);
}

#[test]
fn the_three_formats_derive_the_same_pools() {
    let published = format!("{:?}", ok("fabrikam.xml").pools);
    assert_eq!(published, format!("{:?}", ok("fabrikam.tbxml").pools));
    assert_eq!(published, format!("{:?}", ok("fabrikam.toml").pools));
}

#[test]
fn inventory_keeps_connection_details() {
    let topology = read_topology(&text("fabrikam.toml"), "fabrikam.toml").unwrap();
    assert_eq!(topology.connections.len(), 1);
    let c = &topology.connections[0];
    assert_eq!(c.machine.as_str(), "fe01.fabrikam.com");
    assert_eq!(c.host.as_deref(), Some("10.0.1.11"));
    assert_eq!(c.port, Some(22));
    assert_eq!(c.user.as_deref(), Some("FABRIKAM\\sfbadmin"));
    assert_eq!(c.identity_file.as_deref(), Some("~/.ssh/fabrikam_ed25519"));
    assert!(c.host_key.as_deref().unwrap().starts_with("ssh-ed25519 "));
    assert_eq!(c.span.line, 19);
}

#[test]
fn minimal_inventory_implies_sites_and_stores() {
    let d = ok("minimal.toml");
    let east = d.pool("pool.east.example.com").unwrap();
    assert_eq!(east.site, "East");
    assert_eq!(east.backend.sql_instance.as_str(), "rtc");
    assert_eq!(
        east.backend.stores,
        stores(&[StoreKind::User, StoreKind::Application])
    );
    assert_eq!(east.database_update, DatabaseUpdate::Configured);
    let west = d.pool("se.west.example.com").unwrap();
    assert_eq!(west.site, "West");
    assert_eq!(west.edition, Edition::Standard);
    assert_eq!(west.backend.sql_server_fqdn.as_str(), "se.west.example.com");
    assert_eq!(west.backend.sql_instance.as_str(), "rtc");
    assert_eq!(west.machines.len(), 1);
    assert_eq!(west.database_update, DatabaseUpdate::Local);
}

#[test]
fn lab_inventory() {
    let d = ok("lab.toml");
    assert_eq!(d.pools.len(), 2);
    assert_eq!(d.pools[0].site, "Lab");
    assert_eq!(
        d.pools[0].database_update,
        DatabaseUpdate::ConfiguredExcludeCollocated
    );
    assert_eq!(d.pools[1].database_update, DatabaseUpdate::Local);
}

#[test]
fn lab_topology_builder_with_bom_and_crlf() {
    let d = ok("lab-bom-crlf.tbxml");
    assert_eq!(d.pools.len(), 1);
    let pool = &d.pools[0];
    assert_eq!(pool.backend.sql_server_fqdn.as_str(), "sql.lab.example.com");
    let sql: Vec<&str> = pool
        .backend
        .machines
        .iter()
        .map(|m| m.fqdn.as_str())
        .collect();
    assert_eq!(
        sql,
        ["sql.lab.example.com"],
        "Machine without Fqdn in a single-machine cluster"
    );
    assert_eq!(
        pool.backend.collocated_stores,
        stores(&[StoreKind::Archiving])
    );
}

#[test]
fn namespace_prefixes_and_unknown_elements_are_accepted() {
    let d = ok("prefixed.xml");
    assert_eq!(d.format, SourceFormat::Published);
    assert_eq!(d.pools.len(), 1);
    assert_eq!(d.pools[0].fqdn.as_str(), "pool.lab.example.com");
    assert_eq!(d.pools[0].machines.len(), 2);
}

#[test]
fn mirroring_is_reported_where_the_file_shows_it() {
    let d = ok("mirrored.xml");
    assert_eq!(
        d.pools[0].backend.mirroring.as_deref(),
        Some(
            "mirrored.xml:28:7: SqlInstance 1:2 shows database mirroring \
             (element MirrorSqlInstanceId)"
        )
    );
    let d = ok("mirrored.toml");
    assert_eq!(
        d.pools[0].backend.mirroring.as_deref(),
        Some(
            "mirrored.toml:13:10: [[sql]] sql.lab.example.com shows database mirroring \
             (mirror = \"sqlm.lab.example.com\\rtc\")"
        )
    );
}

/// Every bad-input fixture, with the exact message it must produce.
const BAD: &[(&str, ErrorKind, &str)] = &[
    (
        "bad-malformed.xml",
        ErrorKind::Malformed,
        "bad-malformed.xml:12:7: malformed XML: expected 'Machine' tag, not 'Machines' [SFB-T001]",
    ),
    (
        "bad-malformed-crlf.tbxml",
        ErrorKind::Malformed,
        "bad-malformed-crlf.tbxml:7:86: malformed XML: malformed entity reference [SFB-T001]",
    ),
    (
        "bad-malformed.toml",
        ErrorKind::Malformed,
        "bad-malformed.toml:11:27: malformed TOML: invalid basic string, expected `\"` [SFB-T001]",
    ),
    (
        "bad-unknown-root.xml",
        ErrorKind::UnknownFormat,
        "bad-unknown-root.xml:2:1: root element Topology in namespace urn:example:other is \
         neither a published topology (Topology in namespace \
         urn:schema:Microsoft.Rtc.Management.Deploy.Topology.2008) nor a Topology Builder file \
         (TopologyBuilder) [SFB-T002]",
    ),
    (
        "bad-unknown-format.json",
        ErrorKind::UnknownFormat,
        "bad-unknown-format.json:1:1: not a published topology (Get-CsTopology -AsXml), a \
         Topology Builder file (.tbxml) or an sfbpatch inventory (TOML with [[pool]] tables) \
         [SFB-T002]",
    ),
    (
        "bad-dangling.tbxml",
        ErrorKind::DanglingReference,
        "bad-dangling.tbxml:33:9: Service 0c000000-0000-4000-8000-000000000002: InstalledOn \
         refers to SqlInstance 0b000000-0000-4000-8000-00000000dead which does not exist \
         [SFB-T003]",
    ),
    (
        "bad-dangling-crlf.xml",
        ErrorKind::DanglingReference,
        "bad-dangling-crlf.xml:38:5: Service 1:UserStore:1: InstalledOn refers to SqlInstance \
         1:2\\rtc which does not exist [SFB-T003]",
    ),
    (
        "bad-dangling.toml",
        ErrorKind::DanglingReference,
        "bad-dangling.toml:12:8: pool se.lab.example.com: site 'Paris' is not declared by any \
         [[site]] [SFB-T003]",
    ),
    (
        "bad-duplicate-id.xml",
        ErrorKind::DuplicateId,
        "bad-duplicate-id.xml:14:5: Cluster 1:1: duplicate id, already used by the Cluster at \
         line 9 [SFB-T004]",
    ),
    (
        "bad-duplicate-id.tbxml",
        ErrorKind::DuplicateId,
        "bad-duplicate-id.tbxml:36:9: Service 0c000000-0000-4000-8000-000000000002: duplicate \
         id, already used by the Service at line 33 [SFB-T004]",
    ),
    (
        "bad-duplicate-id.toml",
        ErrorKind::DuplicateId,
        "bad-duplicate-id.toml:10:1: pool POOL.lab.example.com: declared twice (first at line \
         5) [SFB-T004]",
    ),
    (
        "bad-duplicate-sql-crlf.toml",
        ErrorKind::DuplicateId,
        "bad-duplicate-sql-crlf.toml:18:1: [[sql]] SQL.lab.example.com: SQL instance \
         SQL.lab.example.com is described twice (first at line 14); describe it in one place, \
         in [[sql]] or in one pool's backend [SFB-T004]",
    ),
    (
        "bad-no-user-store.xml",
        ErrorKind::NoUserStore,
        "bad-no-user-store.xml:27:5: Service 1:UserServices:1: the UserServices of pool \
         pool.lab.example.com depend on no UserStore [SFB-T005]",
    ),
    (
        "bad-no-user-store.tbxml",
        ErrorKind::NoUserStore,
        "bad-no-user-store.tbxml:28:9: Service 0c000000-0000-4000-8000-000000000001: the \
         UserServices of pool pool.lab.example.com depend on no UserStore [SFB-T005]",
    ),
    (
        "bad-no-user-store.toml",
        ErrorKind::NoUserStore,
        "bad-no-user-store.toml:8:11: pool pool.lab.example.com: its back end \
         sql.lab.example.com holds no user store [SFB-T005]",
    ),
    (
        "bad-machine-without-fqdn.xml",
        ErrorKind::MachineWithoutFqdn,
        "bad-machine-without-fqdn.xml:12:7: Machine in Cluster 1:1 has no Fqdn, and Cluster \
         1:1 is not a single-machine cluster (IsSingleMachineOnly=\"true\") [SFB-T006]",
    ),
    (
        "bad-machine-without-fqdn.tbxml",
        ErrorKind::MachineWithoutFqdn,
        "bad-machine-without-fqdn.tbxml:12:17: Machine in Cluster \
         0a000000-0000-4000-8000-000000000001 has no Fqdn, and Cluster \
         0a000000-0000-4000-8000-000000000001 is not a single-machine cluster \
         (IsSingleMachineOnly=\"true\") [SFB-T006]",
    ),
    (
        "bad-injection.xml",
        ErrorKind::InvalidName,
        "bad-injection.xml:12:7: Machine in Cluster 1:1: Fqdn is not a valid FQDN \
         'a.example.com;Remove-Item x': character ';' is not allowed (letters, digits, '-' and \
         '.' only) [SFB-T007]",
    ),
    (
        "bad-injection.tbxml",
        ErrorKind::InvalidName,
        "bad-injection.tbxml:9:13: Cluster 0a000000-0000-4000-8000-000000000001: Fqdn is not a \
         valid FQDN 'pool.lab.example.com?Remove-Item C:\\ -Recurse': character '\\n' is not \
         allowed (letters, digits, '-' and '.' only) [SFB-T007]",
    ),
    (
        "bad-injection.toml",
        ErrorKind::InvalidName,
        "bad-injection.toml:7:36: pool pool.lab.example.com: 'machines' is not a valid FQDN \
         'fe2.lab.example.com; Remove-Item C:\\ -Recurse': character ';' is not allowed \
         (letters, digits, '-' and '.' only) [SFB-T007]",
    ),
    (
        "bad-instance-name.xml",
        ErrorKind::InvalidName,
        "bad-instance-name.xml:21:7: SqlInstanceId in Cluster 1:2: Name is not a valid SQL \
         Server instance name 'rtc'; DROP DATABASE rtcxds; --': a SQL Server instance name has \
         at most 16 characters [SFB-T007]",
    ),
    (
        "bad-instance-name.tbxml",
        ErrorKind::InvalidName,
        "bad-instance-name.tbxml:21:17: SqlInstance 0b000000-0000-4000-8000-000000000002: Name \
         is not a valid SQL Server instance name 'rtc;exit': character ';' is not allowed in a \
         SQL Server instance name (letters, digits, '_', '$', '#') [SFB-T007]",
    ),
    (
        "bad-instance-name.toml",
        ErrorKind::InvalidName,
        "bad-instance-name.toml:8:11: pool pool.lab.example.com: 'backend' is not a valid SQL \
         Server instance name 'rtc$(calc)': character '(' is not allowed in a SQL Server \
         instance name (letters, digits, '_', '$', '#') [SFB-T007]",
    ),
    (
        "bad-missing-attribute.xml",
        ErrorKind::MissingAttribute,
        "bad-missing-attribute.xml:14:5: Cluster 1:2: missing required attribute Fqdn \
         [SFB-T008]",
    ),
    (
        "bad-missing-key.toml",
        ErrorKind::MissingAttribute,
        "bad-missing-key.toml:5:1: pool pool.lab.example.com: missing required key 'machines' \
         [SFB-T008]",
    ),
    (
        "bad-unknown-key.toml",
        ErrorKind::InvalidValue,
        "bad-unknown-key.toml:7:1: pool pool.lab.example.com: unknown key 'machine' (expected \
         fqdn, site, edition, product, machines, backend, stores_on) [SFB-T009]",
    ),
    (
        "bad-port.toml",
        ErrorKind::InvalidValue,
        "bad-port.toml:7:75: pool pool.lab.example.com: machine fe2.lab.example.com: 'port' \
         must be an integer from 1 to 65535 [SFB-T009]",
    ),
    (
        "bad-store.toml",
        ErrorKind::InvalidValue,
        "bad-store.toml:16:34: [[sql]] sql.lab.example.com: unknown store 'monitor' (expected \
         user, application, central-management, archiving, monitoring, persistent-chat, \
         persistent-chat-compliance) [SFB-T009]",
    ),
    (
        "bad-edition.toml",
        ErrorKind::Inconsistent,
        "bad-edition.toml:13:11: pool se.lab.example.com: a Standard Edition server's back end \
         is on the server itself, not on sql.lab.example.com [SFB-T010]",
    ),
    (
        "bad-stores-on.toml",
        ErrorKind::Inconsistent,
        "bad-stores-on.toml:10:14: pool pool.lab.example.com: stores_on names SQL instance \
         'monitoring.lab.example.com', which no [[sql]] table or backend describes [SFB-T010]",
    ),
    (
        "bad-always-on.toml",
        ErrorKind::Inconsistent,
        "bad-always-on.toml:8:68: pool pool.lab.example.com: backend: always_on_primary \
         sqlc.lab.example.com is not one of the nodes [SFB-T010]",
    ),
];

#[test]
fn bad_input_is_rejected_with_file_line_column_and_element() {
    let mut failures = Vec::new();
    for (name, kind, message) in BAD {
        let e = err(name);
        if e.kind() != *kind || e.to_string() != *message {
            failures.push(format!(
                "{name}:\n  got      {e} ({:?})\n  expected {message} ({kind:?})",
                e.kind()
            ));
        }
        assert_eq!(e.code(), kind.code());
        assert_eq!(e.origin(), *name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_fixture_is_checked() {
    let listed: BTreeSet<&str> = BAD.iter().map(|(name, _, _)| *name).collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("bad-") {
            assert!(
                listed.contains(name.as_str()),
                "{name} has no expected message"
            );
        }
    }
}

#[test]
fn every_error_kind_has_a_fixture_and_documentation() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors-topology.md"),
    )
    .expect("docs/errors-topology.md");
    let codes: BTreeSet<&str> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
    assert_eq!(codes.len(), ErrorKind::ALL.len(), "codes are unique");
    for kind in ErrorKind::ALL {
        assert!(
            BAD.iter().any(|(_, k, _)| *k == kind),
            "{kind:?} has no bad-input fixture"
        );
        assert!(
            doc.contains(&format!("## {}", kind.code())),
            "{} is not documented",
            kind.code()
        );
    }
}

#[test]
fn the_documented_inventory_example_derives_like_the_fixture() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/inventory.md"),
    )
    .expect("docs/inventory.md");
    let start = doc.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("end of the example");
    let example = load(&doc[start..end], "inventory.md").unwrap_or_else(|e| panic!("{e}"));
    let fixture = ok("fabrikam.toml");
    let summary = |d: &Deployment| -> Vec<String> {
        d.pools
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} {}\\{} {:?} {:?} {}",
                    p.fqdn,
                    p.site,
                    p.edition,
                    p.backend.sql_server_fqdn,
                    p.backend.sql_instance.as_str(),
                    p.backend.stores,
                    p.backend
                        .machines
                        .iter()
                        .map(|m| m.fqdn.as_str())
                        .collect::<Vec<_>>(),
                    p.database_update
                )
            })
            .collect()
    };
    assert_eq!(summary(&example), summary(&fixture));
}

/// A Registrar that names another pool's Registrar as its backup (`Usage="Backup"`) pairs the
/// two pools for disaster recovery, both ways; pools with no backup are paired with nothing.
#[test]
fn backup_registrars_pair_pools() {
    let d = ok("paired.xml");
    let paired: Vec<(&str, Option<&str>)> = d
        .pools
        .iter()
        .map(|p| (p.fqdn.as_str(), p.paired_with.as_ref().map(|f| f.as_str())))
        .collect();
    assert_eq!(
        paired,
        vec![
            (
                "fepool1.berlin.demo.example",
                Some("fepool2.berlin.demo.example")
            ),
            (
                "fepool2.berlin.demo.example",
                Some("fepool1.berlin.demo.example")
            ),
            ("fepool3.dublin.demo.example", None),
            ("se1.dublin.demo.example", None),
            ("se2.dublin.demo.example", None),
        ]
    );
    // The fabrikam deployment shows no pairing.
    assert!(
        ok("fabrikam.xml")
            .pools
            .iter()
            .all(|p| p.paired_with.is_none())
    );
}

#[test]
fn the_product_line_comes_from_the_pool_s_user_services() {
    // Pools whose files do not say have no product line.
    assert!(ok("minimal.toml").pools.iter().all(|p| p.product.is_none()));

    let inventory = |product: &str| {
        format!(
            "[[pool]]\nfqdn = \"se01.example.com\"\nsite = \"A\"\nedition = \"standard\"\n{product}\n"
        )
    };
    for (year, line) in [
        ("2013", ProductLine::Lync2013),
        ("2015", ProductLine::SfB2015),
        ("2019", ProductLine::SfB2019),
    ] {
        let d = sfbpatch_topology::load(&inventory(&format!("product = \"{year}\"")), "p.toml")
            .unwrap();
        assert_eq!(d.pools[0].product, Some(line));
    }
    let e = sfbpatch_topology::load(&inventory("product = \"2016\""), "p.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "p.toml:5:11: pool se01.example.com: product '2016' is not \"2013\", \"2015\" or \"2019\" [SFB-T009]"
    );

    let text = text("fabrikam.xml");
    let first = text.find("ServiceVersion=\"8\"").unwrap();
    let pool01_user_services = text.find("RoleName=\"UserServices\"").unwrap();
    assert!(first < pool01_user_services);
    let mut changed = text.clone();
    let at = text[..pool01_user_services]
        .rfind("ServiceVersion=\"8\"")
        .unwrap();
    changed.replace_range(
        at..at + "ServiceVersion=\"8\"".len(),
        "ServiceVersion=\"5\"",
    );
    let e = sfbpatch_topology::load(&changed, "fabrikam.xml").unwrap_err();
    assert_eq!(e.code(), "SFB-T009");
    assert!(
        e.message().contains(
            "ServiceVersion '5' of pool pool01.fabrikam.com names no product line sfbpatch knows"
        ),
        "{e}"
    );
}
