//! The configured providers by name: which one a chat uses when it names none, which model it
//! gets when it names none, and the `NAME=KIND:URL[#MODEL]` spec of the command line.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::future::join_all;

use super::anthropic::Anthropic;
use super::ollama::Ollama;
use super::openai::OpenAi;
use super::{LlmError, Provider, ProviderConfig, ProviderSettings};
use crate::proto::{ModelInfo, ModelList, ProviderFailure, ProviderInfo, ProviderKind};

/// The provider used when none is configured, so that a local Ollama works with no setup.
const IMPLICIT_OLLAMA: &str = "ollama";
/// Where Ollama listens by default.
pub const DEFAULT_OLLAMA_URL: &str = "http://127.0.0.1:11434";

/// Why a provider configuration cannot be used, said when the server starts rather than on the
/// first chat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderConfigError {
    #[error(
        "bad provider spec {spec:?}: {reason} (expected NAME=KIND:URL[#MODEL], e.g. local=ollama:http://127.0.0.1:11434)"
    )]
    Spec { spec: String, reason: String },
    #[error("the default provider {0} is not configured")]
    UnknownDefault(String),
    #[error("provider {provider}: base URL {url:?} {reason}")]
    BadUrl {
        provider: String,
        url: String,
        reason: String,
    },
    #[error("provider {provider}: the API key in ${env} cannot be sent in an HTTP header")]
    BadKey { provider: String, env: String },
    #[error("cannot set up an HTTP client: {0}")]
    Client(String),
}

/// The providers a server can chat with, by name. Cheap to clone: the providers are shared.
#[derive(Clone)]
pub struct Providers {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    default: String,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("names", &self.providers.keys().collect::<Vec<_>>())
            .field("default", &self.default)
            .finish()
    }
}

impl Providers {
    /// Builds the providers, reading each API key from its environment variable.
    pub fn new(
        configs: BTreeMap<String, ProviderConfig>,
        default: Option<&str>,
        settings: ProviderSettings,
    ) -> Result<Providers, ProviderConfigError> {
        Providers::with_keys(configs, default, settings, |var| std::env::var(var).ok())
    }

    /// Builds the providers, looking API keys up with `key` (given an environment variable's
    /// name) instead of in the environment, for callers that hold keys elsewhere.
    ///
    /// With no configuration at all there is one provider, `ollama` at its default address. The
    /// default is `default` when given, else the first provider by name.
    pub fn with_keys(
        mut configs: BTreeMap<String, ProviderConfig>,
        default: Option<&str>,
        settings: ProviderSettings,
        key: impl Fn(&str) -> Option<String>,
    ) -> Result<Providers, ProviderConfigError> {
        if configs.is_empty() {
            configs.insert(
                IMPLICIT_OLLAMA.to_string(),
                ProviderConfig {
                    kind: ProviderKind::Ollama,
                    base_url: DEFAULT_OLLAMA_URL.to_string(),
                    api_key_env: None,
                    default_model: None,
                },
            );
        }
        let default = match default {
            Some(name) if configs.contains_key(name) => name.to_string(),
            Some(name) => return Err(ProviderConfigError::UnknownDefault(name.to_string())),
            None => configs.keys().next().cloned().unwrap_or_default(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| ProviderConfigError::Client(e.to_string()))?;
        let mut providers = BTreeMap::new();
        for (name, config) in configs {
            check_url(&name, &config.base_url)?;
            let env = config.api_key_env.clone().or_else(|| match config.kind {
                ProviderKind::Openai => Some("OPENAI_API_KEY".to_string()),
                ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY".to_string()),
                ProviderKind::Ollama => None,
            });
            let api_key = env.as_deref().and_then(&key).filter(|k| !k.is_empty());
            let info = ProviderInfo {
                name: name.clone(),
                kind: config.kind,
                is_local: is_local(&config.base_url),
                is_default: name == default,
                base_url: config.base_url,
                default_model: config.default_model,
            };
            let bad_key = |_| ProviderConfigError::BadKey {
                provider: name.clone(),
                env: env.clone().unwrap_or_default(),
            };
            let key = api_key.as_deref();
            let provider: Arc<dyn Provider> = match info.kind {
                ProviderKind::Ollama => {
                    Arc::new(Ollama::new(info, key, http.clone(), settings).map_err(bad_key)?)
                }
                ProviderKind::Openai => {
                    Arc::new(OpenAi::new(info, key, http.clone(), settings).map_err(bad_key)?)
                }
                ProviderKind::Anthropic => {
                    Arc::new(Anthropic::new(info, key, http.clone(), settings).map_err(bad_key)?)
                }
            };
            providers.insert(name, provider);
        }
        Ok(Providers { providers, default })
    }

    /// The provider called `name`, or the default one.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<dyn Provider>, LlmError> {
        let name = name.unwrap_or(&self.default);
        self.providers
            .get(name)
            .cloned()
            .ok_or_else(|| LlmError::UnknownProvider(name.to_string()))
    }

    /// The name of the provider chats use when they name none.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Every provider, by name, as `GET /api/v1/providers` shows them.
    pub fn list(&self) -> Vec<ProviderInfo> {
        self.providers.values().map(|p| p.info()).collect()
    }

    /// The provider and model a chat uses: the ones named, else the default provider, and its
    /// default model, else the first model it lists (so a local Ollama needs no configuration).
    pub async fn resolve(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Result<(Arc<dyn Provider>, String), LlmError> {
        let provider = self.get(provider)?;
        if let Some(model) = model.filter(|m| !m.is_empty()) {
            return Ok((provider, model.to_string()));
        }
        let info = provider.info();
        if let Some(model) = info.default_model {
            return Ok((provider, model));
        }
        let first = provider.models().await?.into_iter().next();
        match first {
            Some(model) => {
                tracing::debug!(provider = %info.name, %model, "no model named: using the first listed");
                Ok((provider, model))
            }
            None => Err(LlmError::NoModel(info.name)),
        }
    }

    /// What every provider offers, asked of all at once; a provider that cannot say is listed
    /// with its reason instead of failing the whole list.
    pub async fn models(&self) -> ModelList {
        let answers = join_all(
            self.providers
                .iter()
                .map(|(name, provider)| async move { (name.clone(), provider.models().await) }),
        )
        .await;
        let mut list = ModelList {
            models: Vec::new(),
            errors: Vec::new(),
        };
        for (provider, answer) in answers {
            match answer {
                Ok(models) => list.models.extend(models.into_iter().map(|id| ModelInfo {
                    provider: provider.clone(),
                    id,
                })),
                Err(error) => list.errors.push(ProviderFailure {
                    provider,
                    message: error.to_string(),
                }),
            }
        }
        list
    }
}

/// Whether `url` is an `http(s)://` URL with a host.
fn check_url(provider: &str, url: &str) -> Result<(), ProviderConfigError> {
    let bad = |reason: &str| ProviderConfigError::BadUrl {
        provider: provider.to_string(),
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("is not http:// or https://"));
    }
    if parsed.host().is_none() {
        return Err(bad("has no host"));
    }
    Ok(())
}

/// Whether a URL points at this machine or the local network: `localhost`, a `.local` (mDNS)
/// name, a loopback, private or link-local address. Such a provider keeps the conversation on
/// the premises, which clients may want to show.
fn is_local(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => is_local_ip(ip),
        Err(_) => {
            let host = host.trim_end_matches('.');
            host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local")
        }
    }
}

fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => is_local_ip(IpAddr::V4(v4)),
            None => ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local(),
        },
    }
}

/// Reads a provider given on the command line as `NAME=KIND:URL[#MODEL]`, e.g.
/// `local=ollama:http://127.0.0.1:11434` or `gpt=openai:https://api.openai.com/v1#gpt-4o-mini`.
/// KIND is `ollama`, `openai` (or `openai-compatible`) or `anthropic`; the API key comes from
/// the kind's usual environment variable.
pub fn parse_provider_spec(spec: &str) -> Result<(String, ProviderConfig), ProviderConfigError> {
    let bad = |reason: &str| ProviderConfigError::Spec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (name, rest) = spec
        .split_once('=')
        .ok_or_else(|| bad("no NAME= before the kind"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad("a name has only letters, digits, '-', '_' and '.'"));
    }
    let (kind, rest) = rest
        .split_once(':')
        .ok_or_else(|| bad("no KIND: before the URL"))?;
    let kind = match kind.trim().to_ascii_lowercase().as_str() {
        "ollama" => ProviderKind::Ollama,
        "openai" | "openai-compatible" | "openai_compatible" => ProviderKind::Openai,
        "anthropic" => ProviderKind::Anthropic,
        other => {
            return Err(bad(&format!(
                "unknown kind {other:?} (ollama, openai or anthropic)"
            )));
        }
    };
    let (url, model) = match rest.split_once('#') {
        Some((url, model)) => {
            let model = model.trim();
            if model.is_empty() {
                return Err(bad("the model after '#' is empty"));
            }
            (url.trim(), Some(model.to_string()))
        }
        None => (rest.trim(), None),
    };
    check_url(name, url).map_err(|e| match e {
        ProviderConfigError::BadUrl { url, reason, .. } => {
            bad(&format!("the URL {url:?} {reason}"))
        }
        other => other,
    })?;
    Ok((
        name.to_string(),
        ProviderConfig {
            kind,
            base_url: url.to_string(),
            api_key_env: None,
            default_model: model,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_kind_url_and_model() {
        assert_eq!(
            parse_provider_spec("local=ollama:http://127.0.0.1:11434").unwrap(),
            (
                "local".to_string(),
                ProviderConfig {
                    kind: ProviderKind::Ollama,
                    base_url: "http://127.0.0.1:11434".into(),
                    api_key_env: None,
                    default_model: None,
                }
            )
        );
        let (name, config) =
            parse_provider_spec("gpt=openai:https://api.openai.com/v1#gpt-4o-mini").unwrap();
        assert_eq!(name, "gpt");
        assert_eq!(config.kind, ProviderKind::Openai);
        assert_eq!(config.base_url, "https://api.openai.com/v1");
        assert_eq!(config.default_model.as_deref(), Some("gpt-4o-mini"));
        let (_, config) =
            parse_provider_spec("box=openai-compatible:http://10.0.0.5:8080/v1#meta/llama:8b")
                .unwrap();
        assert_eq!(config.default_model.as_deref(), Some("meta/llama:8b"));
        let (_, config) =
            parse_provider_spec("claude=anthropic:https://api.anthropic.com").unwrap();
        assert_eq!(config.kind, ProviderKind::Anthropic);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, words) in [
            ("ollama:http://x", "no NAME="),
            ("=ollama:http://x", "name is empty"),
            ("a b=ollama:http://x", "letters, digits"),
            ("local=http://x", "unknown kind \"http\""),
            ("local", "no NAME="),
            ("local=gemini:http://x", "unknown kind \"gemini\""),
            ("local=ollama", "no KIND:"),
            ("local=ollama:ftp://x", "not http:// or https://"),
            ("local=ollama:not a url", "is not a URL"),
            ("local=ollama:http://x#", "model after '#' is empty"),
        ] {
            let error = parse_provider_spec(spec).unwrap_err().to_string();
            assert!(error.contains(words), "{spec}: {error}");
            assert!(error.contains("NAME=KIND:URL[#MODEL]"), "{error}");
        }
    }

    #[test]
    fn local_means_this_machine_or_the_local_network() {
        for url in [
            "http://127.0.0.1:11434",
            "http://localhost:8080/v1",
            "http://192.168.1.20:11434",
            "http://10.0.0.5/v1",
            "http://172.16.3.4",
            "http://169.254.1.1",
            "http://[::1]:11434",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://gpu-box.local:11434",
        ] {
            assert!(is_local(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "https://api.anthropic.com",
            "http://8.8.8.8",
            "http://[2001:db8::1]/",
            "not a url",
        ] {
            assert!(!is_local(url), "{url}");
        }
    }

    #[test]
    fn no_configuration_means_ollama_on_this_machine() {
        let providers =
            Providers::with_keys(BTreeMap::new(), None, ProviderSettings::default(), |_| None)
                .unwrap();
        let list = providers.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "ollama");
        assert_eq!(list[0].base_url, DEFAULT_OLLAMA_URL);
        assert!(list[0].is_local && list[0].is_default);
        assert_eq!(providers.get(None).unwrap().info().name, "ollama");
        assert!(matches!(
            providers.get(Some("gpt")),
            Err(LlmError::UnknownProvider(name)) if name == "gpt"
        ));
    }

    #[test]
    fn the_default_is_the_named_one_else_the_first() {
        let configs: BTreeMap<String, ProviderConfig> = [
            parse_provider_spec("b=openai:https://api.openai.com/v1").unwrap(),
            parse_provider_spec("a=ollama:http://127.0.0.1:11434").unwrap(),
        ]
        .into_iter()
        .collect();
        let settings = ProviderSettings::default();
        let providers = Providers::with_keys(configs.clone(), None, settings, |_| None).unwrap();
        assert_eq!(providers.default_name(), "a");
        let providers =
            Providers::with_keys(configs.clone(), Some("b"), settings, |_| None).unwrap();
        assert_eq!(providers.get(None).unwrap().info().name, "b");
        let defaults: Vec<bool> = providers.list().iter().map(|p| p.is_default).collect();
        assert_eq!(defaults, [false, true]);
        assert_eq!(
            Providers::with_keys(configs, Some("c"), settings, |_| None).err(),
            Some(ProviderConfigError::UnknownDefault("c".into()))
        );
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused() {
        let configs = [parse_provider_spec("gpt=openai:https://api.openai.com/v1").unwrap()]
            .into_iter()
            .collect();
        let error = Providers::with_keys(configs, None, ProviderSettings::default(), |_| {
            Some("bad\nkey".into())
        })
        .err();
        assert_eq!(
            error,
            Some(ProviderConfigError::BadKey {
                provider: "gpt".into(),
                env: "OPENAI_API_KEY".into()
            })
        );
    }
}
