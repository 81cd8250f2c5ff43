//! The PowerShell templates, embedded from `crates/remote/scripts/<kind>/<name>.ps1`, and the
//! parameters each declares.

/// The first line of every template: `# sfbpatch-template: <name> v<version>`.
pub const MARKER_PREFIX: &str = "# sfbpatch-template: ";

/// How a parameter's value is written in the binding after the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `[string]`: a single-quoted literal.
    Text,
    /// `[bool]`: `$true` or `$false`.
    Bool,
}

/// One parameter of a template's `param(...)` block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    pub name: &'static str,
    pub kind: Kind,
}

const fn text(name: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Text,
    }
}

const fn flag(name: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Bool,
    }
}

/// A template: its name (`step/stop-w3svc`), its text, and its parameters in the order the
/// `param(...)` block declares them (the order they are bound in).
#[derive(Debug)]
pub(crate) struct Template {
    pub name: &'static str,
    pub text: &'static str,
    pub params: &'static [Param],
}

impl Template {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

const SERVER: &[Param] = &[text("Server")];
const STAGE: &[Param] = &[
    text("Server"),
    text("SourceKind"),
    text("Source"),
    text("Sha256"),
    text("Destination"),
    text("ExtractFolder"),
];
const INSTALL: &[Param] = &[
    text("Server"),
    text("Path"),
    text("Build"),
    text("Sha256"),
    text("SchemaVersions"),
];
const DATABASES: &[Param] = &[
    text("Server"),
    text("Variant"),
    text("SqlServerFqdn"),
    flag("ExcludeCollocatedStores"),
    text("UpdatedBy"),
];
const VERIFY: &[Param] = &[
    text("Server"),
    text("Build"),
    text("SqlServerFqdn"),
    text("SqlInstance"),
    flag("CheckDatabases"),
    flag("LocalDatabases"),
    text("SchemaVersions"),
    flag("CheckServices"),
    text("FabricPool"),
];
const FABRIC: &[Param] = &[
    text("Server"),
    text("Pool"),
    text("ReadinessCmdlet"),
    flag("ResetMissingReplicas"),
];
const COMPUTER: &[Param] = &[text("Server"), text("Computer")];
const STOP: &[Param] = &[text("Server"), text("CommandTail")];
const LOCK: &[Param] = &[
    text("Server"),
    text("Holder"),
    text("Generation"),
    text("NowMs"),
    text("ExpiresAt"),
];
const UNLOCK: &[Param] = &[text("Server"), text("Holder")];

macro_rules! templates {
    ($($name:literal => $params:expr),* $(,)?) => {
        /// Every template, as `(name, text)`: `step/<step id>` and `probe/<step id>` for the
        /// steps, `server/reboot`, `server/recover`, `server/preflight`, `server/stop`,
        /// `server/lock` and `server/unlock`.
        pub const TEMPLATES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../scripts/", $name, ".ps1"))),)*
        ];

        pub(crate) const SPECS: &[Template] = &[
            $(Template {
                name: $name,
                text: include_str!(concat!("../scripts/", $name, ".ps1")),
                params: $params,
            },)*
        ];
    };
}

templates! {
    "step/check-admin-role" => SERVER,
    "step/stage-update" => STAGE,
    "step/check-fabric-state" => FABRIC,
    "step/failover" => COMPUTER,
    "step/stop-cs-services" => SERVER,
    "step/stop-w3svc" => SERVER,
    "step/close-management-shells" => SERVER,
    "step/install-update" => INSTALL,
    "step/stop-cs-services-gac" => SERVER,
    "step/start-w3svc" => SERVER,
    "step/update-databases" => DATABASES,
    "step/start-cs-services" => SERVER,
    "step/failback" => COMPUTER,
    "step/verify" => VERIFY,
    "probe/check-admin-role" => SERVER,
    "probe/stage-update" => STAGE,
    "probe/check-fabric-state" => FABRIC,
    "probe/failover" => COMPUTER,
    "probe/stop-cs-services" => SERVER,
    "probe/stop-w3svc" => SERVER,
    "probe/close-management-shells" => SERVER,
    "probe/install-update" => INSTALL,
    "probe/stop-cs-services-gac" => SERVER,
    "probe/start-w3svc" => SERVER,
    "probe/update-databases" => DATABASES,
    "probe/start-cs-services" => SERVER,
    "probe/failback" => COMPUTER,
    "probe/verify" => VERIFY,
    "server/reboot" => SERVER,
    "server/recover" => SERVER,
    "server/preflight" => SERVER,
    "server/stop" => STOP,
    "server/lock" => LOCK,
    "server/unlock" => UNLOCK,
}

/// The template called `name`.
pub(crate) fn spec(name: &str) -> Option<&'static Template> {
    SPECS.iter().find(|t| t.name == name)
}

/// The marker line a template starts with, split into name and version (`v1`).
pub(crate) fn marker(first_line: &str) -> Option<(&str, &str)> {
    first_line
        .strip_prefix(MARKER_PREFIX)?
        .trim_end_matches('\r')
        .rsplit_once(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_starts_with_its_marker_and_ends_with_a_newline() {
        assert_eq!(SPECS.len(), TEMPLATES.len());
        for t in SPECS {
            let first = t.text.lines().next().unwrap();
            assert_eq!(marker(first), Some((t.name, "v1")), "{}", t.name);
            assert!(t.text.ends_with('\n'), "{}", t.name);
            assert!(t.text.is_ascii(), "{} is not ASCII", t.name);
            assert!(!t.text.contains('\r'), "{} has CR line ends", t.name);
        }
    }

    #[test]
    fn the_result_names_the_template() {
        for t in SPECS {
            let needle = format!("$result = [ordered]@{{ template = '{}';", t.name);
            assert!(t.text.contains(&needle), "{} does not name itself", t.name);
        }
    }
}
