//! The sealing engine shared by the KEK and the signing key: the key file's line, the
//! primary key's template, sealing under a PCR policy and unsealing (see the module doc
//! of `tpm` for the why).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use tss_esapi::{
    Context,
    abstraction::pcr,
    attributes::{ObjectAttributesBuilder, SessionAttributesBuilder},
    constants::{SessionType, response_code::Tss2ResponseCodeKind},
    handles::KeyHandle,
    interface_types::{
        algorithm::{HashingAlgorithm, PublicAlgorithm},
        ecc::EccCurve,
        resource_handles::Hierarchy,
        session_handles::{AuthSession, PolicySession},
    },
    structures::{
        Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot,
        Private, Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
        SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
    },
    tcti_ldr::TctiNameConf,
    traits::{Marshall, UnMarshall},
};
use zeroize::Zeroizing;

use super::PcrSelection;
use crate::secret_file::{self, SecretFileError};

/// A key file is one short line; anything much longer is not ours.
const MAX_FILE_BYTES: u64 = 4096;

pub(crate) enum SealError {
    Missing,
    TooOpen { mode: u32 },
    Io(io::Error),
    Malformed { prefix: &'static str },
    PcrMismatch { pcrs: String },
    OtherTpm,
    Tpm { what: &'static str, detail: String },
}

impl From<SecretFileError> for SealError {
    fn from(e: SecretFileError) -> Self {
        match e {
            SecretFileError::Missing => SealError::Missing,
            SecretFileError::TooOpen { mode } => SealError::TooOpen { mode },
            SecretFileError::Io(e) => SealError::Io(e),
            // Only `read_private_text` of an over-long or non-UTF-8 file; the caller
            // replaces it with its own prefix.
            SecretFileError::Malformed => SealError::Malformed { prefix: "" },
        }
    }
}

/// A TPM error, kept as text (codes and their meaning; never a secret).
fn tpm(what: &'static str) -> impl FnOnce(tss_esapi::Error) -> SealError {
    move |e| SealError::Tpm {
        what,
        detail: e.to_string(),
    }
}

fn kind(e: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => rc.kind(),
        tss_esapi::Error::WrapperError(_) => None,
    }
}

/// One sealed secret's file on one TPM.
pub(crate) struct Sealer {
    tcti: String,
    conf: TctiNameConf,
    path: PathBuf,
    pcrs: PcrSelection,
    prefix: &'static str,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("tcti", &self.tcti)
            .field("path", &self.path)
            .field("pcrs", &self.pcrs)
            .finish()
    }
}

/// The key file's content.
struct SealedFile {
    pcrs: PcrSelection,
    public: Public,
    private: Private,
}

impl Sealer {
    pub(crate) fn new(
        tcti: &str,
        path: PathBuf,
        pcrs: PcrSelection,
        prefix: &'static str,
    ) -> Result<Self, SealError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|e| SealError::Tpm {
            what: "reading the TCTI (expected e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`)",
            detail: e.to_string(),
        })?;
        Ok(Sealer {
            tcti: tcti.to_string(),
            conf,
            path,
            pcrs,
            prefix,
        })
    }

    pub(crate) fn tcti(&self) -> &str {
        &self.tcti
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn pcrs(&self) -> &PcrSelection {
        &self.pcrs
    }

    pub(crate) fn describe(&self, what: &str) -> String {
        format!(
            "{what} {} (TPM {}, PCRs {})",
            self.path.display(),
            self.tcti,
            self.pcrs
        )
    }

    fn context(&self) -> Result<Context, SealError> {
        Context::new(self.conf.clone()).map_err(tpm("connecting to the TPM"))
    }

    /// Seals a fresh secret (`make` gets 32 bytes from the TPM's generator) unless the
    /// file exists; returns whether it wrote the file.
    pub(crate) fn seal_new(
        &self,
        make: impl FnOnce(&[u8; 32]) -> Zeroizing<[u8; 32]>,
    ) -> Result<bool, SealError> {
        if std::fs::symlink_metadata(&self.path).is_ok() {
            return Ok(false);
        }
        let mut ctx = self.context()?;
        let tpm_random = ctx
            .execute_without_session(|c| c.get_random(32))
            .map_err(tpm("drawing random bytes (TPM2_GetRandom)"))?;
        let tpm_random: [u8; 32] = tpm_random.value().try_into().map_err(|_| SealError::Tpm {
            what: "drawing random bytes (TPM2_GetRandom)",
            detail: format!("{} bytes instead of 32", tpm_random.value().len()),
        })?;
        let secret = make(&tpm_random);

        let primary = create_primary(&mut ctx)?;
        let (selection, pcr_digest) = read_pcrs(&mut ctx, &self.pcrs)?;
        let policy = trial_policy(&mut ctx, selection, pcr_digest)?;
        let template = sealed_template(policy).map_err(tpm("building the sealed object"))?;

        // A session salted by the primary, so that the secret crosses the bus encrypted.
        let session = salted_session(&mut ctx, primary, SessionType::Hmac, true, false)?;
        let sensitive =
            SensitiveData::try_from(secret.to_vec()).map_err(tpm("building the sealed object"))?;
        let created = ctx
            .execute_with_session(Some(session), |c| {
                c.create(primary, template, None, Some(sensitive), None, None)
            })
            .map_err(tpm("sealing (TPM2_Create)"))?;
        let file = SealedFile {
            pcrs: self.pcrs.clone(),
            public: created.out_public,
            private: created.out_private,
        };
        let line = self.encode(&file)?;
        drop(ctx);

        // Unseal it once, by the path `load` takes, before it becomes the key.
        let back = self.unseal_file(self.decode(&line)?)?;
        if back[..] != secret[..] {
            return Err(SealError::Tpm {
                what: "checking the sealed object",
                detail: "it unsealed to another value".into(),
            });
        }
        secret_file::create_new_text(&self.path, line.as_bytes()).map_err(SealError::from)
    }

    /// Unseals the file's secret.
    pub(crate) fn unseal(&self) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let text = secret_file::read_private_text(&self.path, MAX_FILE_BYTES).map_err(|e| {
            match SealError::from(e) {
                SealError::Malformed { .. } => self.malformed(),
                other => other,
            }
        })?;
        let file = self.decode(&text)?;
        self.unseal_file(file)
    }

    fn unseal_file(&self, file: SealedFile) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let mut ctx = self.context()?;
        let primary = create_primary(&mut ctx)?;
        let object = ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.load(primary, file.private, file.public)
            })
            .map_err(|e| match kind(&e) {
                // The private area's integrity is checked with a key derived from the
                // parent's seed: another TPM's (or an altered) blob fails here.
                Some(Tss2ResponseCodeKind::Integrity) => SealError::OtherTpm,
                _ => tpm("loading the sealed object (TPM2_Load)")(e),
            })?;
        let (selection, _) = selection_list(&file.pcrs).map_err(tpm("reading the PCRs"))?;
        // Response encryption: the unsealed secret crosses the bus encrypted.
        let session = salted_session(&mut ctx, primary, SessionType::Policy, false, true)?;
        let policy_session = PolicySession::try_from(session).map_err(tpm("policy session"))?;
        // An empty digest: the TPM takes its current PCR values, and the policy holds
        // only if they are those the object was sealed to.
        ctx.execute_without_session(|c| c.policy_pcr(policy_session, Digest::default(), selection))
            .map_err(tpm("satisfying the PCR policy (TPM2_PolicyPCR)"))?;
        let data = ctx
            .execute_with_session(Some(session), |c| c.unseal(object.into()))
            .map_err(|e| match kind(&e) {
                Some(Tss2ResponseCodeKind::PolicyFail) => SealError::PcrMismatch {
                    pcrs: file.pcrs.to_string(),
                },
                _ => tpm("unsealing (TPM2_Unseal)")(e),
            })?;
        let bytes: &[u8] = data.value();
        if bytes.len() != 32 {
            return Err(self.malformed());
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(bytes);
        Ok(secret)
    }

    fn malformed(&self) -> SealError {
        SealError::Malformed {
            prefix: self.prefix,
        }
    }

    fn encode(&self, file: &SealedFile) -> Result<String, SealError> {
        let public = file
            .public
            .marshall()
            .map_err(tpm("encoding the sealed object"))?;
        Ok(format!(
            "{}{}:{}:{}\n",
            self.prefix,
            file.pcrs,
            hex::encode(public),
            hex::encode(file.private.value())
        ))
    }

    /// Parses the line strictly, and refuses a public area that is not a sealed object
    /// bound to a policy alone.
    fn decode(&self, text: &str) -> Result<SealedFile, SealError> {
        let bad = || self.malformed();
        let line = text.strip_suffix('\n').unwrap_or(text);
        let rest = line.strip_prefix(self.prefix).ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let [bank, list, public_hex, private_hex] = parts[..] else {
            return Err(bad());
        };
        let pcrs = PcrSelection::from_str(&format!("{bank}:{list}")).map_err(|_| bad())?;
        let public_bytes = hex::decode(public_hex).map_err(|_| bad())?;
        let private_bytes = hex::decode(private_hex).map_err(|_| bad())?;
        if public_bytes.is_empty() || private_bytes.is_empty() {
            return Err(bad());
        }
        let public = Public::unmarshall(&public_bytes).map_err(|_| bad())?;
        // Trailing bytes, or a non-canonical encoding, are not ours.
        if public.marshall().map_err(|_| bad())? != public_bytes {
            return Err(bad());
        }
        let Public::KeyedHash {
            object_attributes,
            name_hashing_algorithm,
            auth_policy,
            ..
        } = &public
        else {
            return Err(bad());
        };
        if *name_hashing_algorithm != HashingAlgorithm::Sha256
            || auth_policy.value().len() != 32
            || object_attributes.user_with_auth()
            || !object_attributes.admin_with_policy()
            || !object_attributes.fixed_tpm()
            || !object_attributes.fixed_parent()
        {
            return Err(bad());
        }
        let private = Private::try_from(private_bytes).map_err(|_| bad())?;
        Ok(SealedFile {
            pcrs,
            public,
            private,
        })
    }
}

/// The storage primary under the owner hierarchy: ECC P-256, AES-128-CFB for its
/// children, the attributes `tpm2_createprimary` gives; derived from the owner seed, so
/// the same on every call on the same TPM.
fn primary_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn create_primary(ctx: &mut Context) -> Result<KeyHandle, SealError> {
    let template = primary_template().map_err(tpm("building the primary key's template"))?;
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.create_primary(Hierarchy::Owner, template, None, None, None, None)
    })
    .map(|r| r.key_handle)
    .map_err(tpm(
        "creating the primary key in the owner hierarchy (TPM2_CreatePrimary; the owner authorisation must be empty)",
    ))
}

/// A sealed data object (keyed hash, no scheme) whose only authorisation is `policy`.
fn sealed_template(policy: Digest) -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_admin_with_policy(true)
        .with_user_with_auth(false)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

fn selection_list(pcrs: &PcrSelection) -> tss_esapi::Result<(PcrSelectionList, Vec<PcrSlot>)> {
    let slots = pcrs
        .pcrs()
        .iter()
        .map(|&p| PcrSlot::try_from(1u32 << p))
        .collect::<tss_esapi::Result<Vec<_>>>()?;
    let list = PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()?;
    Ok((list, slots))
}

/// The selection and the SHA-256 of the PCRs' current values, concatenated in
/// ascending order (as `TPM2_PolicyPCR` digests them).
fn read_pcrs(
    ctx: &mut Context,
    pcrs: &PcrSelection,
) -> Result<(PcrSelectionList, Digest), SealError> {
    let (list, slots) = selection_list(pcrs).map_err(tpm("reading the PCRs"))?;
    let data = ctx
        .execute_without_session(|c| pcr::read_all(c, list.clone()))
        .map_err(tpm("reading the PCRs (TPM2_PCR_Read)"))?;
    let not_there = || SealError::Tpm {
        what: "reading the PCRs (TPM2_PCR_Read)",
        detail: format!("the TPM gave no value for {pcrs} (is its SHA-256 bank active?)"),
    };
    let bank = data
        .pcr_bank(HashingAlgorithm::Sha256)
        .ok_or_else(not_there)?;
    let mut hasher = Sha256::new();
    for slot in slots {
        hasher.update(bank.get_digest(slot).ok_or_else(not_there)?.value());
    }
    let digest = Digest::try_from(hasher.finalize().to_vec()).map_err(tpm("reading the PCRs"))?;
    Ok((list, digest))
}

/// The policy digest of `TPM2_PolicyPCR(selection, pcr_digest)`, computed by the TPM in
/// a trial session.
fn trial_policy(
    ctx: &mut Context,
    selection: PcrSelectionList,
    pcr_digest: Digest,
) -> Result<Digest, SealError> {
    let what = "computing the PCR policy (trial session)";
    let session = ctx
        .execute_without_session(|c| {
            c.start_auth_session(
                None,
                None,
                None,
                SessionType::Trial,
                SymmetricDefinition::Null,
                HashingAlgorithm::Sha256,
            )
        })
        .map_err(tpm(what))?
        .ok_or_else(|| SealError::Tpm {
            what,
            detail: "no session".into(),
        })?;
    let policy_session = PolicySession::try_from(session).map_err(tpm(what))?;
    let digest = ctx
        .execute_without_session(|c| {
            c.policy_pcr(policy_session, pcr_digest, selection)?;
            c.policy_get_digest(policy_session)
        })
        .map_err(tpm(what))?;
    ctx.flush_context(tss_esapi::handles::SessionHandle::from(session).into())
        .map_err(tpm(what))?;
    Ok(digest)
}

/// A session salted by `primary` (its key agreed with the TPM through the primary, so
/// an observer of the bus learns nothing), encrypting the command's first parameter
/// (`decrypt`) or the response's (`encrypt`).
fn salted_session(
    ctx: &mut Context,
    primary: KeyHandle,
    kind: SessionType,
    decrypt: bool,
    encrypt: bool,
) -> Result<AuthSession, SealError> {
    let what = "starting an encrypted session";
    let session = ctx
        .execute_without_session(|c| {
            c.start_auth_session(
                Some(primary),
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
        })
        .map_err(tpm(what))?
        .ok_or_else(|| SealError::Tpm {
            what,
            detail: "no session".into(),
        })?;
    let (attributes, mask) = SessionAttributesBuilder::new()
        .with_continue_session(true)
        .with_decrypt(decrypt)
        .with_encrypt(encrypt)
        .build();
    ctx.tr_sess_set_attributes(session, attributes, mask)
        .map_err(tpm(what))?;
    Ok(session)
}
