//! A sample deployment and package, every script rendered for it, and the PowerShell grammar.
#![allow(dead_code)]

use std::collections::BTreeMap;

use sfbpatch_plan::{Build, Installer, Package, Plan, PlanPolicy, ServerPlan};
use sfbpatch_remote::{Operation, Script, script_for};
use sfbpatch_topology::StoreKind;
use tree_sitter::{Node, Parser, Tree};

/// Every database-update variant: a back end without collocated stores, one with them on a
/// named instance, a Standard Edition server, and an AlwaysOn availability group of two nodes.
pub const INVENTORY: &str = r#"
[[pool]]
fqdn = "pool01.fabrikam.com"
site = "Redmond"
machines = ["fe01.fabrikam.com", "fe02.fabrikam.com"]
backend = "sql01.fabrikam.com"

[[pool]]
fqdn = "pool02.fabrikam.com"
site = "Redmond"
machines = ["fe03.fabrikam.com", "fe04.fabrikam.com"]
backend = 'sql02.fabrikam.com\rtc'

[[pool]]
fqdn = "se01.fabrikam.com"
site = "Dublin"
edition = "standard"

[[pool]]
fqdn = "pool03.fabrikam.com"
site = "Dublin"
machines = ["fe05.fabrikam.com", "fe06.fabrikam.com"]
backend = { sql_server = "ag01.fabrikam.com", always_on_primary = "sqlag01a.fabrikam.com",
            nodes = ["sqlag01a.fabrikam.com", "sqlag01b.fabrikam.com"] }

[[sql]]
fqdn = "sql01.fabrikam.com"
stores = ["user", "application", "central-management"]

[[sql]]
fqdn = "sql02.fabrikam.com"
instance = "rtc"
stores = ["user", "application", "archiving", "monitoring"]
"#;

/// The server the snapshots show: a back end with collocated stores on a named instance.
pub const SAMPLE_SERVER: &str = "sql02.fabrikam.com";
/// A Front End server of the sample server's pool.
pub const SAMPLE_FRONT_END: &str = "fe03.fabrikam.com";

pub fn package() -> Package {
    let mut schema_versions = BTreeMap::new();
    schema_versions.insert(StoreKind::User, "15.13.27".to_string());
    schema_versions.insert(StoreKind::Archiving, "15.13.2".to_string());
    Package {
        name: "Skype for Business Server 2019 CU8 HF1".to_string(),
        version: "7.0.2046.553".parse::<Build>().unwrap(),
        installer: Installer::Server(
            r"\\files.fabrikam.com\updates\SkypeServerUpdateInstaller.exe".to_string(),
        ),
        sha256: "c30d976f4b3e363089ddb18e014b0eabc3ca71ab51f5466f351427d8097aa4fd".to_string(),
        schema_versions,
        product: None,
    }
}

pub fn plan_with(package: Package) -> Plan {
    let deployment = sfbpatch_topology::load(INVENTORY, "fabrikam.toml").expect("inventory");
    sfbpatch_plan::plan(&deployment, &package, &PlanPolicy::default()).expect("plan")
}

pub fn plan() -> Plan {
    plan_with(package())
}

pub fn server<'a>(plan: &'a Plan, fqdn: &str) -> &'a ServerPlan {
    plan.servers
        .iter()
        .find(|s| s.fqdn.as_str() == fqdn)
        .unwrap_or_else(|| panic!("{fqdn} in the plan"))
}

/// The lock every sample `server/lock` and `server/unlock` script names: a controller's run
/// (with a single quote, which the binding doubles), the generation of its claim, its clock
/// and the lock's expiry (Unix milliseconds).
pub const LOCK_HOLDER: &str = "sqlite:C:\\ProgramData\\sfbpatch\\O'Brien's state.db#run12";
pub const LOCK_GENERATION: u64 = 3;
pub const LOCK_NOW_MS: u64 = 1_700_000_000_000;
pub const LOCK_EXPIRES_AT: u64 = 1_700_043_200_000;

/// One rendered script and what it was rendered for.
pub struct Rendered<'a> {
    pub op: Operation,
    pub server: &'a ServerPlan,
    pub step: &'a sfbpatch_plan::PlannedStep,
    pub script: Script,
}

/// Every script the plan can send: each step's and probe's on every server, and each server's
/// reboot, recovery, pre-flight, stop, lock and unlock.
pub fn every_script(plan: &Plan) -> Vec<Rendered<'_>> {
    let mut out = Vec::new();
    for server in &plan.servers {
        for step in &server.steps {
            for op in [Operation::Execute, Operation::Probe] {
                let script = script_for(op, server, step, &plan.package)
                    .unwrap_or_else(|e| panic!("{op} {} on {}: {e}", step.id, server.fqdn));
                out.push(Rendered {
                    op,
                    server,
                    step,
                    script,
                });
            }
        }
        for op in [Operation::Reboot, Operation::Recover, Operation::Preflight] {
            let step = &server.steps[0];
            let script = script_for(op, server, step, &plan.package).expect("server script");
            out.push(Rendered {
                op,
                server,
                step,
                script,
            });
        }
        // Stopping the first step's script, as after its timeout.
        let step = &server.steps[0];
        let first = script_for(Operation::Execute, server, step, &plan.package).unwrap();
        out.push(Rendered {
            op: Operation::Stop,
            server,
            step,
            script: sfbpatch_remote::stop_script(&server.fqdn, &first.command_line()).unwrap(),
        });
        // Taking and releasing the server's own lock.
        out.push(Rendered {
            op: Operation::Lock,
            server,
            step,
            script: sfbpatch_remote::lock_script(
                &server.fqdn,
                LOCK_HOLDER,
                LOCK_GENERATION,
                LOCK_NOW_MS,
                LOCK_EXPIRES_AT,
            )
            .unwrap(),
        });
        out.push(Rendered {
            op: Operation::Unlock,
            server,
            step,
            script: sfbpatch_remote::unlock_script(&server.fqdn, LOCK_HOLDER).unwrap(),
        });
    }
    out
}

pub fn parse(text: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("the PowerShell grammar loads");
    parser
        .parse(text, None)
        .expect("tree-sitter returns a tree")
}

/// Every ERROR and MISSING node, as `line:column: kind "text"`.
pub fn syntax_problems(text: &str) -> Vec<String> {
    let tree = parse(text);
    let mut problems = Vec::new();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            let at = node.start_position();
            let snippet: String = text[node.byte_range()].chars().take(60).collect();
            problems.push(format!(
                "{}:{}: {}{} {snippet:?}",
                at.row + 1,
                at.column + 1,
                if node.is_missing() { "MISSING " } else { "" },
                node.kind()
            ));
        }
        stack.extend(children(node).into_iter().rev());
    }
    problems.sort();
    if problems.is_empty() && tree.root_node().has_error() {
        problems.push("the tree has an error the walk did not find".to_string());
    }
    problems
}

pub fn children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.children(&mut cursor).collect()
}

/// Every node of `kind` below `node` (pre-order).
pub fn descendants<'t>(node: Node<'t>, kind: &str) -> Vec<Node<'t>> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if n.kind() == kind {
            out.push(n);
        }
        stack.extend(children(n).into_iter().rev());
    }
    out
}

pub fn text_of<'s>(node: Node<'_>, source: &'s str) -> &'s str {
    &source[node.byte_range()]
}

/// The statements at the top of a script.
pub fn top_statements(tree: &Tree) -> Vec<Node<'_>> {
    let root = tree.root_node();
    children(root)
        .into_iter()
        .filter(|n| n.kind() == "statement_list")
        .flat_map(|list| {
            children(list)
                .into_iter()
                .filter(|n| n.is_named() && n.kind() != "empty_statement")
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The bindings of the one top-level command (`& { ... } -Name value ...`): each parameter
/// name with its argument node.
pub fn bindings<'t>(tree: &'t Tree, source: &str) -> Vec<(String, Node<'t>)> {
    let statements = top_statements(tree);
    assert_eq!(
        statements.len(),
        1,
        "the script is one statement: {:?}",
        statements
            .iter()
            .map(|s| text_of(*s, source).chars().take(40).collect::<String>())
            .collect::<Vec<_>>()
    );
    let command = descendants(statements[0], "command")
        .into_iter()
        .next()
        .expect("a command");
    let elements = command
        .child_by_field_name("command_elements")
        .expect("the command has arguments");
    let parts: Vec<Node<'_>> = children(elements)
        .into_iter()
        .filter(|n| n.kind() != "command_argument_sep")
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        assert_eq!(parts[i].kind(), "command_parameter", "at {i}");
        let name = text_of(parts[i], source)
            .trim_start_matches('-')
            .to_string();
        let value = *parts.get(i + 1).expect("a value after each parameter");
        out.push((name, value));
        i += 2;
    }
    out
}

/// The parameters a template declares at its top: name, type (`string`, `bool`), and whether
/// it is mandatory.
pub fn declared_params(template: &str) -> Vec<(String, String, bool)> {
    let tree = parse(template);
    let block = descendants(tree.root_node(), "param_block")
        .into_iter()
        .next()
        .expect("a param block");
    descendants(block, "script_parameter")
        .into_iter()
        .map(|p| {
            let name = children(p)
                .into_iter()
                .find(|n| n.kind() == "variable")
                .map(|v| text_of(v, template).trim_start_matches('$').to_string())
                .expect("a parameter variable");
            let ty = descendants(p, "type_literal")
                .last()
                .map(|t| {
                    text_of(*t, template)
                        .trim_matches(|c| c == '[' || c == ']')
                        .to_string()
                })
                .expect("a type");
            let mandatory = text_of(p, template).contains("[Parameter(Mandatory = $true)]");
            (name, ty, mandatory)
        })
        .collect()
}
