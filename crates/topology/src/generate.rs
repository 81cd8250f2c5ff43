//! Synthetic published topologies, for benchmarks, property tests and the lab.

use std::fmt::Write;

use crate::product::ProductLine;
use crate::xml::PUBLISHED_NAMESPACE;

/// SplitMix64 (Steele, Lea and Flood): tiny, fast and good enough to pick a topology's shape.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Standard Edition server: SQL instance `rtc` on its own cluster.
    Standard,
    /// Enterprise pool, back end holding only its own stores.
    Enterprise,
    /// Enterprise pool with Archiving and/or Monitoring collocated on its back end.
    Collocated,
    /// Enterprise pool whose Monitoring store is on the site's monitoring SQL server.
    RemoteMonitoring,
    /// Enterprise pool on an AlwaysOn availability group of two nodes.
    AlwaysOn,
}

const KINDS: [Kind; 5] = [
    Kind::Standard,
    Kind::Enterprise,
    Kind::Collocated,
    Kind::RemoteMonitoring,
    Kind::AlwaysOn,
];

const CITIES: [&str; 12] = [
    "Amsterdam",
    "Berlin",
    "Chicago",
    "Dublin",
    "Helsinki",
    "Lisbon",
    "Madrid",
    "Oslo",
    "Paris",
    "Seattle",
    "Sydney",
    "Tokyo",
];

const DOMAIN: &str = "example.com";
const SERVICE_ROLES_NS: &str = "urn:schema:Microsoft.Rtc.Management.Deploy.ServiceRoles.2008";

/// A valid published topology (`Get-CsTopology -AsXml` format) with `pools` pools that have a
/// back end, spread over several sites: Standard Edition servers, Enterprise pools with and
/// without collocated Archiving/Monitoring stores, Enterprise pools whose Monitoring store is on
/// another SQL server, and AlwaysOn back ends with two nodes. Every site also has an Edge pool,
/// which is not a pool with a back end. The first five pools cover the five shapes in that
/// order; the rest are drawn at random.
///
/// The same `pools` and `seed` always give the same text. Every service is of Skype for
/// Business Server 2019 (`ServiceVersion="8"`); [`generate_product`] writes another line.
pub fn generate(pools: usize, seed: u64) -> String {
    generate_product(pools, seed, ProductLine::SfB2019)
}

/// [`generate`] for the given product line: every service has its `ServiceVersion`.
pub fn generate_product(pools: usize, seed: u64, product: ProductLine) -> String {
    let mut generator = Generator::new(pools, seed);
    generator.service_version = product.service_version();
    generator.run()
}

struct Site {
    name: String,
    slug: String,
    clusters: u32,
    /// Per role name, the last service instance number used.
    instances: Vec<(&'static str, u32)>,
    /// The MonitoringStore on the site's monitoring SQL server, once created.
    monitoring_store: Option<ServiceKey>,
}

impl Site {
    fn next_cluster(&mut self) -> u32 {
        self.clusters += 1;
        self.clusters
    }

    fn next_instance(&mut self, role: &'static str) -> u32 {
        match self.instances.iter_mut().find(|(r, _)| *r == role) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.instances.push((role, 1));
                1
            }
        }
    }
}

/// A service as written: `(site, role, instance)`.
type ServiceKey = (usize, &'static str, u32);

struct Generator {
    rng: SplitMix64,
    pools: usize,
    sites: Vec<Site>,
    clusters: String,
    sql_instances: String,
    services: String,
    cms_placed: bool,
    service_version: u32,
}

impl Generator {
    fn new(pools: usize, seed: u64) -> Self {
        let site_count = pools.div_ceil(4).clamp(1, 50);
        let sites = (0..site_count)
            .map(|k| {
                let city = CITIES[k % CITIES.len()];
                let round = k / CITIES.len();
                let (name, slug) = if round == 0 {
                    (city.to_string(), city.to_ascii_lowercase())
                } else {
                    (
                        format!("{city} {}", round + 1),
                        format!("{}{}", city.to_ascii_lowercase(), round + 1),
                    )
                };
                Site {
                    name,
                    slug,
                    clusters: 0,
                    instances: Vec::new(),
                    monitoring_store: None,
                }
            })
            .collect();
        Generator {
            rng: SplitMix64(seed),
            pools,
            sites,
            clusters: String::with_capacity(pools * 1200),
            sql_instances: String::with_capacity(pools * 200),
            services: String::with_capacity(pools * 2500),
            cms_placed: false,
            service_version: ProductLine::SfB2019.service_version(),
        }
    }

    fn run(mut self) -> String {
        for s in 0..self.sites.len() {
            self.edge_pool(s);
        }
        for n in 0..self.pools {
            let kind = match KINDS.get(n) {
                Some(kind) => *kind,
                None => match self.rng.below(100) {
                    0..30 => Kind::Standard,
                    30..55 => Kind::Enterprise,
                    55..75 => Kind::Collocated,
                    75..90 => Kind::RemoteMonitoring,
                    _ => Kind::AlwaysOn,
                },
            };
            self.pool(n % self.sites.len(), n + 1, kind);
        }
        self.document()
    }

    fn document(self) -> String {
        let mut out = String::with_capacity(
            self.clusters.len() + self.sql_instances.len() + self.services.len() + 4096,
        );
        let mut rng = self.rng;
        let signature = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            rng.next() as u32,
            rng.next() as u16,
            rng.next() as u16,
            rng.next() as u16,
            rng.next() & 0xffff_ffff_ffff
        );
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <Topology xmlns=\"{PUBLISHED_NAMESPACE}\" Signature=\"{signature}\">\n  \
             <InternalDomains AllowAllDomains=\"false\" DefaultDomain=\"{DOMAIN}\">\n    \
             <InternalDomain Name=\"{DOMAIN}\" Authoritative=\"false\" AllowSubDomains=\"true\" />\n  \
             </InternalDomains>\n  <Sites>\n"
        );
        for (k, site) in self.sites.iter().enumerate() {
            let _ = write!(
                out,
                "    <CentralSite SiteId=\"{}\">\n      <Name>{}</Name>\n      \
                 <Location City=\"{}\" />\n    </CentralSite>\n",
                k + 1,
                site.name,
                site.name
            );
        }
        out.push_str("  </Sites>\n  <Clusters>\n");
        out.push_str(&self.clusters);
        out.push_str("  </Clusters>\n  <SqlInstances>\n");
        out.push_str(&self.sql_instances);
        out.push_str("  </SqlInstances>\n  <Services>\n");
        out.push_str(&self.services);
        out.push_str("  </Services>\n</Topology>\n");
        out
    }

    fn pool(&mut self, s: usize, n: usize, kind: Kind) {
        let slug = self.sites[s].slug.clone();
        let pool_number = self.sites[s].next_cluster();
        let (pool_fqdn, fronts) = match kind {
            Kind::Standard => (format!("se{n:04}.{slug}.{DOMAIN}"), 0),
            _ => (
                format!("pool{n:04}.{slug}.{DOMAIN}"),
                2 + self.rng.below(3) as usize,
            ),
        };
        if kind == Kind::Standard {
            self.cluster(
                s,
                pool_number,
                &pool_fqdn,
                std::slice::from_ref(&pool_fqdn),
                true,
            );
        } else {
            let machines: Vec<String> = (1..=fronts)
                .map(|j| format!("fe{n:04}-{j}.{slug}.{DOMAIN}"))
                .collect();
            self.cluster(s, pool_number, &pool_fqdn, &machines, true);
        }

        // The back end.
        let (sql_cluster, instance) = match kind {
            Kind::Standard => (pool_number, "rtc"),
            Kind::AlwaysOn => {
                let number = self.sites[s].next_cluster();
                let nodes = [
                    format!("sql{n:04}-a.{slug}.{DOMAIN}"),
                    format!("sql{n:04}-b.{slug}.{DOMAIN}"),
                ];
                self.cluster(
                    s,
                    number,
                    &format!("ag{n:04}.{slug}.{DOMAIN}"),
                    &nodes,
                    false,
                );
                (number, "")
            }
            _ => {
                let number = self.sites[s].next_cluster();
                let fqdn = format!("sql{n:04}.{slug}.{DOMAIN}");
                self.cluster(s, number, &fqdn, std::slice::from_ref(&fqdn), false);
                let instance = ["", "", "rtc", "SFBBE"][self.rng.below(4) as usize];
                (number, instance)
            }
        };
        let primary = (kind == Kind::AlwaysOn).then(|| format!("sql{n:04}-a.{slug}.{DOMAIN}"));
        self.sql_instance(s, sql_cluster, instance, primary.as_deref());

        let mut stores = vec!["UserStore", "ApplicationStore"];
        if !self.cms_placed {
            stores.push("CentralMgmtStore");
            self.cms_placed = true;
        }
        if kind == Kind::Collocated {
            match self.rng.below(3) {
                0 => stores.push("ArchivingStore"),
                1 => stores.push("MonitoringStore"),
                _ => stores.extend(["ArchivingStore", "MonitoringStore"]),
            }
        }
        let on_backend = InstalledOn::Sql(s, sql_cluster, instance);
        let mut store_keys = Vec::with_capacity(stores.len());
        for role in stores {
            store_keys.push(self.service(s, role, &on_backend, &[]));
        }
        if kind == Kind::RemoteMonitoring {
            store_keys.push(self.remote_monitoring(s));
        }

        let on_pool = InstalledOn::Cluster(s, pool_number);
        let user_store = store_keys[0];
        let user_services = self.service(s, "UserServices", &on_pool, &[user_store]);
        let mut registrar_deps = vec![user_services];
        registrar_deps.extend(
            store_keys
                .iter()
                .filter(|k| matches!(k.1, "ArchivingStore" | "MonitoringStore"))
                .copied(),
        );
        let registrar = self.service(s, "Registrar", &on_pool, &registrar_deps);
        self.service(s, "WebServices", &on_pool, &[user_services]);
        if self.rng.percent(50) {
            self.service(s, "MediationServer", &on_pool, &[registrar]);
        }
    }

    /// The site's monitoring SQL server and its MonitoringStore, created on first use.
    fn remote_monitoring(&mut self, s: usize) -> ServiceKey {
        if let Some(store) = self.sites[s].monitoring_store {
            return store;
        }
        let number = self.sites[s].next_cluster();
        let fqdn = format!("sqlmon.{}.{DOMAIN}", self.sites[s].slug);
        self.cluster(s, number, &fqdn, std::slice::from_ref(&fqdn), false);
        self.sql_instance(s, number, "mon", None);
        let store = self.service(
            s,
            "MonitoringStore",
            &InstalledOn::Sql(s, number, "mon"),
            &[],
        );
        self.sites[s].monitoring_store = Some(store);
        store
    }

    fn edge_pool(&mut self, s: usize) {
        let number = self.sites[s].next_cluster();
        let slug = self.sites[s].slug.clone();
        let machines = [format!("edge1.{slug}.{DOMAIN}")];
        self.cluster(
            s,
            number,
            &format!("edge.{slug}.{DOMAIN}"),
            &machines,
            false,
        );
        self.service(s, "EdgeServer", &InstalledOn::Cluster(s, number), &[]);
    }

    fn cluster(&mut self, s: usize, number: u32, fqdn: &str, machines: &[String], domains: bool) {
        let out = &mut self.clusters;
        let _ = write!(
            out,
            "    <Cluster RequiresReplication=\"true\" RequiresSetup=\"true\" Fqdn=\"{fqdn}\">\n      \
             <ClusterId SiteId=\"{}\" Number=\"{number}\" />\n",
            s + 1
        );
        for (j, machine) in machines.iter().enumerate() {
            let j = j + 1;
            let _ = write!(
                out,
                "      <Machine OrdinalInCluster=\"{j}\" Fqdn=\"{machine}\""
            );
            if domains {
                let _ = write!(
                    out,
                    " FaultDomain=\"FaultDomain{j}\" UpgradeDomain=\"UpgradeDomain{j}\""
                );
            }
            let ip = self.rng.next();
            let _ = write!(
                out,
                ">\n        <NetInterface InterfaceSide=\"Primary\" InterfaceNumber=\"1\" \
                 IPAddress=\"10.{}.{}.{}\" />\n      </Machine>\n",
                ip & 0xff,
                (ip >> 8) & 0xff,
                1 + (ip >> 16) % 254
            );
        }
        out.push_str("    </Cluster>\n");
    }

    fn sql_instance(&mut self, s: usize, cluster: u32, name: &str, primary: Option<&str>) {
        let out = &mut self.sql_instances;
        out.push_str("    <SqlInstance");
        if let Some(primary) = primary {
            let _ = write!(out, " AlwaysOnPrimaryNodeFqdn=\"{primary}\"");
        }
        let _ = write!(
            out,
            ">\n      <SqlInstanceId Name=\"{name}\">\n        \
             <ClusterId SiteId=\"{}\" Number=\"{cluster}\" />\n      \
             </SqlInstanceId>\n    </SqlInstance>\n",
            s + 1
        );
    }

    fn service(
        &mut self,
        s: usize,
        role: &'static str,
        on: &InstalledOn,
        depends_on: &[ServiceKey],
    ) -> ServiceKey {
        let instance = self.sites[s].next_instance(role);
        let version = self.service_version;
        let out = &mut self.services;
        let _ = write!(
            out,
            "    <Service RoleVersion=\"1\" ServiceVersion=\"{version}\">\n      \
             <ServiceId SiteId=\"{}\" RoleName=\"{role}\" Instance=\"{instance}\" />\n",
            s + 1
        );
        if depends_on.is_empty() {
            out.push_str("      <DependsOn />\n");
        } else {
            out.push_str("      <DependsOn>\n");
            for (site, role, instance) in depends_on {
                let _ = write!(
                    out,
                    "        <Dependency Usage=\"Default\">\n          \
                     <ServiceId SiteId=\"{}\" RoleName=\"{role}\" Instance=\"{instance}\" />\n        \
                     </Dependency>\n",
                    site + 1
                );
            }
            out.push_str("      </DependsOn>\n");
        }
        out.push_str("      <InstalledOn>\n");
        match *on {
            InstalledOn::Cluster(site, number) => {
                let _ = writeln!(
                    out,
                    "        <ClusterId SiteId=\"{}\" Number=\"{number}\" />",
                    site + 1
                );
            }
            InstalledOn::Sql(site, number, name) => {
                let _ = write!(
                    out,
                    "        <SqlInstanceId Name=\"{name}\">\n          \
                     <ClusterId SiteId=\"{}\" Number=\"{number}\" />\n        </SqlInstanceId>\n",
                    site + 1
                );
            }
        }
        let _ = write!(
            out,
            "      </InstalledOn>\n      <Ports xmlns=\"{SERVICE_ROLES_NS}\" />\n    </Service>\n"
        );
        (s, role, instance)
    }
}

enum InstalledOn {
    Cluster(usize, u32),
    Sql(usize, u32, &'static str),
}
