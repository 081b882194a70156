//! Keys of the general-purpose cache, and the scopes they can be invalidated by.
//!
//! A [`Key`] is `(namespace, tenant, id)`. The id is built from parts by a
//! [`KeyBuilder`]: `v{version}:{part}:{part}…`, each part escaped so that `:` only
//! ever separates parts, and any part longer than [`MAX_PART_BYTES`] replaced by
//! `#` and 32 hex digits of its SHA-256. The format is stable (it is what lives in
//! Redis and Postgres) and versioned: bumping a builder's version retires every key
//! it built before, without touching them.
//!
//! Every key belongs to the invalidation [`Scope`]s listed by [`Key::scopes`]: its
//! namespace, its tenant, the pair, and each proper prefix of its parts. An entry
//! additionally belongs to the scopes of its tags.

use sha2::{Digest, Sha256};

use super::KvError;

/// Parts (and tags) longer than this are stored as a hash: keys stay bounded.
pub const MAX_PART_BYTES: usize = 64;
/// More parts than this is a modelling mistake, not a key.
pub const MAX_PARTS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    namespace: String,
    /// Escaped (see [`escape`]).
    tenant: String,
    id: String,
    /// `{namespace}:{tenant}:{id}`: the storage key of the memory and Redis tiers.
    full: String,
}

impl Key {
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The tenant as stored (escaped).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn full(&self) -> &str {
        &self.full
    }

    /// Parses a storage key (`full`) back, as the operator CLI receives it.
    pub fn parse(full: &str) -> Result<Key, KvError> {
        let mut it = full.splitn(3, ':');
        let (Some(ns), Some(tenant), Some(id)) = (it.next(), it.next(), it.next()) else {
            return Err(KvError::InvalidKey(format!(
                "{full:?} is not namespace:tenant:id"
            )));
        };
        check_namespace(ns)?;
        Ok(Key {
            namespace: ns.to_owned(),
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            full: full.to_owned(),
        })
    }

    /// Generation scopes this key belongs to (see [`Scope::id`]).
    pub fn scopes(&self) -> Vec<String> {
        let (ns, t) = (&self.namespace, &self.tenant);
        let mut out = vec![format!("n:{ns}"), format!("t:{t}"), format!("nt:{ns}:{t}")];
        // Proper prefixes of the parts: `v1:a:b:c` belongs to `v1:a` and `v1:a:b`.
        let cuts: Vec<usize> = self.id.match_indices(':').map(|(i, _)| i).collect();
        for &cut in cuts.iter().skip(1) {
            out.push(format!("p:{ns}:{t}:{}", &self.id[..cut]));
        }
        out
    }
}

/// Builds keys of one namespace at one key-format version.
#[derive(Clone, Debug)]
pub struct KeyBuilder {
    namespace: String,
    version: u32,
}

impl KeyBuilder {
    pub fn new(namespace: &str) -> Result<Self, KvError> {
        check_namespace(namespace)?;
        Ok(KeyBuilder {
            namespace: namespace.to_owned(),
            version: 1,
        })
    }

    /// A new version retires every key built under the previous one.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn key(&self, tenant: &str, parts: &[&str]) -> Result<Key, KvError> {
        if parts.is_empty() || parts.len() > MAX_PARTS {
            return Err(KvError::InvalidKey(format!(
                "a key has 1 to {MAX_PARTS} parts, not {}",
                parts.len()
            )));
        }
        let tenant = escape(tenant);
        let id = self.id(parts);
        let full = format!("{}:{}:{}", self.namespace, tenant, id);
        Ok(Key {
            namespace: self.namespace.clone(),
            tenant,
            id,
            full,
        })
    }

    /// The scope of every key of `tenant` whose parts start with `parts` (and have
    /// at least one more part).
    pub fn prefix(&self, tenant: &str, parts: &[&str]) -> Result<Scope, KvError> {
        if parts.is_empty() || parts.len() >= MAX_PARTS {
            return Err(KvError::InvalidKey("a prefix has 1 to 15 parts".to_owned()));
        }
        Ok(Scope::Prefix {
            namespace: self.namespace.clone(),
            tenant: escape(tenant),
            id_prefix: self.id(parts),
        })
    }

    fn id(&self, parts: &[&str]) -> String {
        let mut id = format!("v{}", self.version);
        for p in parts {
            id.push(':');
            id.push_str(&part(p));
        }
        id
    }
}

/// What an invalidation removes. Each is one generation counter (memory, Redis) or
/// one indexed `DELETE` (Postgres): the cost never grows with the number of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant's entries of a namespace.
    Namespace(String),
    /// Every entry of a tenant, in every namespace.
    Tenant(String),
    /// One tenant's entries of one namespace.
    TenantNamespace { tenant: String, namespace: String },
    /// Built by [`KeyBuilder::prefix`]; fields are in stored (escaped) form.
    Prefix {
        namespace: String,
        tenant: String,
        id_prefix: String,
    },
    /// Every entry set with this tag.
    Tag(String),
}

impl Scope {
    pub fn namespace(ns: &str) -> Result<Scope, KvError> {
        check_namespace(ns)?;
        Ok(Scope::Namespace(ns.to_owned()))
    }
    pub fn tenant(tenant: &str) -> Scope {
        Scope::Tenant(escape(tenant))
    }
    pub fn tenant_namespace(tenant: &str, ns: &str) -> Result<Scope, KvError> {
        check_namespace(ns)?;
        Ok(Scope::TenantNamespace {
            tenant: escape(tenant),
            namespace: ns.to_owned(),
        })
    }
    pub fn tag(tag: &str) -> Scope {
        Scope::Tag(normalize_tag(tag))
    }

    /// The one namespace the scope lies in, if it lies in one.
    pub fn namespace_name(&self) -> Option<&str> {
        match self {
            Scope::Namespace(namespace)
            | Scope::TenantNamespace { namespace, .. }
            | Scope::Prefix { namespace, .. } => Some(namespace),
            Scope::Tenant(_) | Scope::Tag(_) => None,
        }
    }

    /// The generation counter's name, as listed by [`Key::scopes`].
    pub fn id(&self) -> String {
        match self {
            Scope::Namespace(ns) => format!("n:{ns}"),
            Scope::Tenant(t) => format!("t:{t}"),
            Scope::TenantNamespace { tenant, namespace } => format!("nt:{namespace}:{tenant}"),
            Scope::Prefix {
                namespace,
                tenant,
                id_prefix,
            } => format!("p:{namespace}:{tenant}:{id_prefix}"),
            Scope::Tag(t) => tag_scope(t),
        }
    }
}

pub(crate) fn tag_scope(normalized: &str) -> String {
    format!("g:{normalized}")
}

/// Tags are stored escaped (no `:`, `%`, `#` or control characters) and hashed
/// when long, like key parts.
pub fn normalize_tag(tag: &str) -> String {
    part(tag)
}

fn part(p: &str) -> String {
    if p.len() > MAX_PART_BYTES {
        let digest = Sha256::digest(p.as_bytes());
        format!("#{}", &hex::encode(digest)[..32])
    } else {
        escape(p)
    }
}

/// Percent-escapes the characters with a meaning in stored keys and tag lists.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | ':' | '#' | '*' | '?' | '[' | ']' | '\\' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c if c.is_control() || c == ' ' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn check_namespace(ns: &str) -> Result<(), KvError> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KvError::InvalidKey(format!(
            "namespace {ns:?}: 1 to 64 of a-z 0-9 _ . -"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_versioned_and_escaped() {
        let b = KeyBuilder::new("stats").unwrap();
        let k = b.key("acme:eu", &["daily", "2026-11-24"]).unwrap();
        assert_eq!(k.full(), "stats:acme%3Aeu:v1:daily:2026-11-24");
        let v2 = b
            .clone()
            .version(2)
            .key("acme:eu", &["daily", "2026-11-24"])
            .unwrap();
        assert_ne!(k, v2);
        assert_eq!(Key::parse(k.full()).unwrap(), k);
        // A part that looks like a separator cannot collide with two parts.
        assert_ne!(
            b.key("t", &["a:b"]).unwrap().full(),
            b.key("t", &["a", "b"]).unwrap().full()
        );
    }

    #[test]
    fn long_parts_are_hashed_and_scopes_cover_prefixes() {
        let b = KeyBuilder::new("render").unwrap();
        let long = "x".repeat(500);
        let k = b.key("t", &["user", "42", &long]).unwrap();
        assert!(k.full().len() < 100, "{}", k.full());
        assert_eq!(k, b.key("t", &["user", "42", &long]).unwrap());
        assert_ne!(k, b.key("t", &["user", "42", &"y".repeat(500)]).unwrap());
        let scopes = k.scopes();
        let prefix = b.prefix("t", &["user", "42"]).unwrap().id();
        assert!(scopes.contains(&prefix), "{scopes:?} lacks {prefix}");
        assert!(scopes.contains(&b.prefix("t", &["user"]).unwrap().id()));
        assert!(!scopes.contains(&b.prefix("t", &["user", "43"]).unwrap().id()));
        assert!(scopes.contains(&Scope::tenant("t").id()));
    }

    #[test]
    fn bad_namespaces_and_part_counts_are_refused() {
        assert!(KeyBuilder::new("Bad Name").is_err());
        assert!(KeyBuilder::new("").is_err());
        let b = KeyBuilder::new("ok").unwrap();
        assert!(b.key("t", &[]).is_err());
        assert!(b.key("t", &["p"; 17]).is_err());
    }
}
