//! Every template, and every script rendered from one, parses with the real PowerShell grammar
//! (tree-sitter-powershell) without an error or a missing node; values stay single literals.

mod common;

use common::*;
use sfbpatch_plan::{Action, Installer, PlannedStep, StepId, ps_quote};
use sfbpatch_remote::{Operation, TEMPLATES, decode_command_line, script_for};

#[test]
fn every_template_parses_without_errors() {
    let mut failures = Vec::new();
    for (name, text) in TEMPLATES {
        let problems = syntax_problems(text);
        if !problems.is_empty() {
            failures.push(format!("{name}:\n  {}", problems.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rendered_script_parses_without_errors() {
    let plan = plan();
    let scripts = every_script(&plan);
    // A step and a probe per planned step, and the six scripts on the whole server.
    let expected: usize = plan.servers.iter().map(|s| 2 * s.steps.len() + 6).sum();
    assert_eq!(scripts.len(), expected);
    for (name, _) in TEMPLATES {
        assert!(
            scripts.iter().any(|r| r.script.template == *name),
            "the sample plan renders no {name}"
        );
    }
    let mut failures = Vec::new();
    for r in &scripts {
        let problems = syntax_problems(&r.script.text);
        if !problems.is_empty() {
            failures.push(format!(
                "{} for {} on {}:\n  {}",
                r.script.template,
                r.step.id,
                r.server.fqdn,
                problems.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The scripts `plan --format powershell` exports for people to run by hand parse too.
#[test]
fn the_exported_scripts_parse_without_errors() {
    let plan = plan();
    let script = sfbpatch_plan::render_powershell(&plan);
    let problems = syntax_problems(&script);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_finds_syntax_errors() {
    let (_, text) = TEMPLATES
        .iter()
        .find(|(name, _)| *name == "step/stop-w3svc")
        .unwrap();
    // A closing brace left out: the try block never ends.
    let broken = text.replacen(
        "    } *>&1 | ForEach-Object",
        "    *>&1 | ForEach-Object",
        1,
    );
    assert_ne!(&broken, text);
    let problems = syntax_problems(&broken);
    assert!(!problems.is_empty(), "a missing brace went unnoticed");

    // An unterminated string and an operator without its operand.
    for bad in [
        "$ErrorActionPreference = 'Stop\n",
        "if ($a -eq ) { 1 }\n",
        "$h = @{ a = 1; b = }\n",
    ] {
        let problems = syntax_problems(bad);
        assert!(!problems.is_empty(), "{bad:?} went unnoticed");
    }
    let problems = syntax_problems("if ($a) {\n  'x'\n");
    assert_eq!(problems, vec!["2:6: MISSING } \"\"".to_string()]);
}

#[test]
fn declared_parameters_are_typed_mandatory_and_bound_in_order() {
    let plan = plan();
    for r in every_script(&plan) {
        let template = TEMPLATES
            .iter()
            .find(|(n, _)| *n == r.script.template)
            .unwrap()
            .1;
        let declared = declared_params(template);
        assert!(!declared.is_empty(), "{}", r.script.template);
        let tree = parse(&r.script.text);
        let bound = bindings(&tree, &r.script.text);
        assert_eq!(
            declared.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
            bound.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            "{}",
            r.script.template
        );
        for ((name, ty, mandatory), (_, value)) in declared.iter().zip(&bound) {
            assert!(mandatory, "{} -{name} is not mandatory", r.script.template);
            let literal = descendants(*value, "string_literal");
            match ty.as_str() {
                "string" => {
                    assert_eq!(literal.len(), 1, "{} -{name}", r.script.template);
                    assert_eq!(literal[0].byte_range(), value.byte_range());
                }
                "bool" => {
                    let text = text_of(*value, &r.script.text);
                    assert!(text == "$true" || text == "$false", "-{name} {text}");
                }
                other => panic!("{} -{name}: unexpected type {other}", r.script.template),
            }
        }
    }
}

fn stage_step_with_source(source: &str) -> (sfbpatch_plan::Plan, PlannedStep) {
    let mut package = package();
    package.installer = Installer::Path(source.to_string());
    let plan = plan_with(package);
    let step = server(&plan, SAMPLE_SERVER)
        .step(StepId::StageUpdate)
        .clone();
    (plan, step)
}

/// The text the `Source` literal holds after PowerShell reads it.
fn verbatim_value(source: &str) -> String {
    let inner = &source[1..source.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}')
            && chars.peek() == Some(&c)
        {
            chars.next();
        }
    }
    out
}

#[test]
fn an_injection_attempt_stays_inside_one_literal() {
    let attacks = [
        r"C:\x'; Remove-Item C:\ -Recurse; '.exe",
        "C:\\x\u{2019}; Remove-Item C:\\ -Recurse; \u{2019}.exe",
        "C:\\x\u{2018}\u{201a}\u{201b}'; Remove-Item C:\\ -Recurse; #",
        r#"C:\x"; Remove-Item C:\ -Recurse; "$(Remove-Item C:\)`'.exe"#,
        r"C:\x'' -Force; '",
    ];
    for attack in attacks {
        let (plan, step) = stage_step_with_source(attack);
        let server = server(&plan, SAMPLE_SERVER);
        let script = script_for(Operation::Execute, server, &step, &plan.package).unwrap();
        assert!(syntax_problems(&script.text).is_empty(), "{attack}");
        let tree = parse(&script.text);
        let bound = bindings(&tree, &script.text);
        let (_, value) = bound.iter().find(|(n, _)| n == "Source").unwrap();
        let literal = text_of(*value, &script.text);
        assert_eq!(literal, ps_quote(attack), "{attack}");
        let strings = descendants(*value, "string_literal");
        assert_eq!(strings.len(), 1, "{attack}");
        assert_eq!(strings[0].byte_range(), value.byte_range(), "{attack}");
        let commands = |tree: &tree_sitter::Tree, text: &str| -> Vec<String> {
            descendants(tree.root_node(), "command_name")
                .iter()
                .map(|n| text_of(*n, text).to_string())
                .collect()
        };
        let template = TEMPLATES
            .iter()
            .find(|(n, _)| *n == "step/stage-update")
            .unwrap()
            .1;
        assert_eq!(
            commands(&tree, &script.text),
            commands(&parse(template), template),
            "{attack}: the script runs a command the template does not"
        );
        assert_eq!(verbatim_value(literal), attack);
        let decoded = decode_command_line(&script.command_line()).unwrap();
        assert_eq!(decoded.params["Source"], attack);
        let request = decoded.request().unwrap();
        match request.step.unwrap().action {
            Action::StageUpdate { source, .. } => {
                assert_eq!(source, Installer::Path(attack.to_string()));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_quoting_function_doubles_every_single_quote_character() {
    let attacks = [
        "'; Remove-Item C:\\ -Recurse; '",
        "\u{2018}; Remove-Item C:\\ -Recurse; \u{2019}",
        "\u{201a}\u{201b}''",
        "plain",
        "",
        "$(Get-Process) `n \"double\"",
    ];
    for attack in attacks {
        let quoted = ps_quote(attack);
        assert!(quoted.starts_with('\'') && quoted.ends_with('\''));
        let quotes = |s: &str| {
            s.chars()
                .filter(|c| matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}'))
                .count()
        };
        assert_eq!(quotes(&quoted), 2 * quotes(attack) + 2, "{attack}");
        assert_eq!(verbatim_value(&quoted), attack);

        let statement = format!("Write-Output {quoted}\n");
        assert!(syntax_problems(&statement).is_empty(), "{statement}");
        let tree = parse(&statement);
        assert_eq!(top_statements(&tree).len(), 1, "{statement}");
        let literals = descendants(tree.root_node(), "string_literal");
        assert_eq!(literals.len(), 1, "{statement}");
        assert_eq!(text_of(literals[0], &statement), quoted);
    }
    // Without the quoting, the same value would be three statements.
    let raw = format!("Write-Output '{}'\n", attacks[0]);
    assert_eq!(top_statements(&parse(&raw)).len(), 3);
}

#[test]
fn a_lock_holder_stays_inside_one_literal() {
    let fqdn = sfbpatch_topology::Fqdn::parse(SAMPLE_SERVER).unwrap();
    let attacks = [
        r"x'; Remove-Item HKLM:\SOFTWARE\sfbpatch -Recurse; '",
        r#"x"; Remove-Item C:\ -Recurse; "$(Remove-Item C:\)`'"#,
        r"x'' -Generation '99",
        "' -Holder 'other",
    ];
    for attack in attacks {
        for script in [
            sfbpatch_remote::lock_script(&fqdn, attack, 1, 2, 3).unwrap(),
            sfbpatch_remote::unlock_script(&fqdn, attack).unwrap(),
        ] {
            assert!(syntax_problems(&script.text).is_empty(), "{attack}");
            let tree = parse(&script.text);
            let bound = bindings(&tree, &script.text);
            let (_, value) = bound.iter().find(|(n, _)| n == "Holder").unwrap();
            let literal = text_of(*value, &script.text);
            assert_eq!(literal, ps_quote(attack), "{attack}");
            let strings = descendants(*value, "string_literal");
            assert_eq!(strings.len(), 1, "{attack}");
            assert_eq!(strings[0].byte_range(), value.byte_range(), "{attack}");
            assert_eq!(verbatim_value(literal), attack);
            let request = decode_command_line(&script.command_line())
                .unwrap()
                .request()
                .unwrap();
            let holder = match request.operation {
                Operation::Lock => request.lock.unwrap().holder,
                _ => request.unlock_holder.unwrap(),
            };
            assert_eq!(holder, attack);
        }
    }
}
