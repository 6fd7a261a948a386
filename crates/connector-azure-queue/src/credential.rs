//! Entra ID credentials (`account_url` + `credential`), made with `azure_identity`.
//!
//! `credential: managed_identity` (or `workload_identity`, `developer_tools`) takes every setting
//! from the environment the platform provides; the map form `{ type: managed_identity, client_id:
//! ... }` names a user-assigned identity or overrides what the environment says.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use azure_core::credentials::TokenCredential;
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

use sluice_core::FieldError;

/// How the connector gets Entra ID tokens for `account_url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// A managed identity: App Service / Functions / Container Apps (`IDENTITY_ENDPOINT` and
    /// `IDENTITY_HEADER`), else the VM's IMDS endpoint. Default: the system-assigned identity;
    /// set one of `client_id`, `object_id`, `resource_id` for a user-assigned one.
    ManagedIdentity {
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        object_id: Option<String>,
        /// Not supported on App Service (the SDK refuses it there).
        #[serde(default)]
        resource_id: Option<String>,
    },
    /// AKS workload identity: a federated Kubernetes token exchanged with Entra ID. Each setting
    /// defaults to what the workload identity webhook injects: `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity {
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        tenant_id: Option<String>,
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// A developer's sign-in: the Azure CLI (`az login`), then the Azure Developer CLI
    /// (`azd auth login`). No settings.
    DeveloperTools {},
    /// A `credential:` that did not parse, kept for `validate` to report with its path (the
    /// connector sections are internally tagged, where serde's own errors lose their path).
    #[serde(skip)]
    Invalid { path: String, message: String },
}

/// The schema of `credential:`: a name, or the map form.
pub fn credential_schema(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {
                "title": "credential",
                "type": "string",
                "enum": ["managed_identity", "workload_identity", "developer_tools"]
            },
            generator.subschema_for::<CredentialConfig>(),
            { "type": "null" }
        ]
    })
}

/// `credential:` is a name (`managed_identity`) or a map with `type:` and settings.
pub fn deserialize_credential<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<CredentialConfig>, D::Error> {
    let value = match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(name)) => serde_json::json!({ "type": name }),
        Some(other) => other,
    };
    Ok(Some(
        CredentialConfig::deserialize(value).unwrap_or_else(|e| invalid(&e.to_string())),
    ))
}

/// serde's message about a `credential:` value, as a path and a message in `sluice validate`'s
/// words.
fn invalid(message: &str) -> CredentialConfig {
    let quoted = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let (name, rest) = rest.split_once('`')?;
        Some((name.to_owned(), rest.to_owned()))
    };
    let (path, message) = if let Some((field, rest)) = quoted("unknown field `") {
        (
            format!("credential.{field}"),
            format!("unknown field{rest}"),
        )
    } else if let Some((field, _)) = quoted("missing field `") {
        (format!("credential.{field}"), "missing field".to_owned())
    } else if let Some((name, rest)) = quoted("unknown variant `") {
        (
            "credential".to_owned(),
            format!("unknown credential `{name}`{rest}"),
        )
    } else {
        ("credential".to_owned(), message.to_owned())
    };
    CredentialConfig::Invalid { path, message }
}

impl CredentialConfig {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        if let CredentialConfig::Invalid { path, message } = self {
            errors.push(FieldError::new(path.clone(), message.clone()));
        }
        if let CredentialConfig::ManagedIdentity {
            client_id,
            object_id,
            resource_id,
        } = self
        {
            let set = [
                ("client_id", client_id),
                ("object_id", object_id),
                ("resource_id", resource_id),
            ]
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k)
            .collect::<Vec<_>>();
            if set.len() > 1 {
                errors.push(FieldError::new(
                    format!("credential.{}", set[1]),
                    format!(
                        "cannot be combined with {}: one user-assigned identity",
                        set[0]
                    ),
                ));
            }
        }
    }

    /// The credential, shared by every client of one connector (one token cache).
    pub fn build(&self) -> anyhow::Result<Arc<dyn TokenCredential>> {
        let credential: Arc<dyn TokenCredential> = match self {
            CredentialConfig::ManagedIdentity {
                client_id,
                object_id,
                resource_id,
            } => {
                let user_assigned_id = client_id
                    .clone()
                    .map(UserAssignedId::ClientId)
                    .or_else(|| object_id.clone().map(UserAssignedId::ObjectId))
                    .or_else(|| resource_id.clone().map(UserAssignedId::ResourceId));
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id,
                    ..Default::default()
                }))
                .context("credential: managed_identity")?
            }
            CredentialConfig::WorkloadIdentity {
                client_id,
                tenant_id,
                token_file,
            } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                token_file_path: token_file.clone(),
                ..Default::default()
            }))
            .context("credential: workload_identity")?,
            CredentialConfig::DeveloperTools {} => {
                DeveloperToolsCredential::new(None).context("credential: developer_tools")?
            }
            CredentialConfig::Invalid { path, message } => anyhow::bail!("{path}: {message}"),
        };
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "deserialize_credential")]
        credential: Option<CredentialConfig>,
    }

    fn parse(json: serde_json::Value) -> Result<Option<CredentialConfig>, String> {
        serde_json::from_value::<Holder>(json)
            .map(|h| h.credential)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_name_or_a_map() {
        let mi = CredentialConfig::ManagedIdentity {
            client_id: None,
            object_id: None,
            resource_id: None,
        };
        assert_eq!(
            parse(serde_json::json!({"credential": "managed_identity"})),
            Ok(Some(mi))
        );
        assert_eq!(
            parse(serde_json::json!({"credential": {"type": "developer_tools"}})),
            Ok(Some(CredentialConfig::DeveloperTools {}))
        );
        assert_eq!(parse(serde_json::json!({})), Ok(None));
        let invalid = |json| {
            let Ok(Some(CredentialConfig::Invalid { path, message })) = parse(json) else {
                panic!("not kept as invalid");
            };
            format!("{path}: {message}")
        };
        assert_eq!(
            invalid(serde_json::json!({"credential": "password"})),
            "credential: unknown credential `password`, expected one of `managed_identity`, `workload_identity`, `developer_tools`"
        );
        assert_eq!(
            invalid(serde_json::json!({"credential": {"type": "managed_identity", "id": "x"}})),
            "credential.id: unknown field, expected one of `client_id`, `object_id`, `resource_id`"
        );
        assert_eq!(
            invalid(serde_json::json!({"credential": {"client_id": "x"}})),
            "credential.type: missing field"
        );
    }
}
