//! wardseal-contracts: the hospital's data rules, device registry, patients' consent and
//! audit anchors on Ethereum, and the [`Ledger`] the rest of wardseal uses to reach them.
//!
//! # Design
//!
//! - **Contracts** (`contracts/sol/`, Solidity 0.8.30 compiled by the pinned solc-js into
//!   the committed `contracts/artifacts/`): `RuleManager` (rule admins; group → rule id →
//!   rule contract; patients' own alarm limits, set by rule admins or the patient's
//!   responsible clinicians; emits every change), `RangeRule` (per data type: unit, an
//!   inclusive plausibility range per value component, clinical alarm limits with
//!   priorities, readings per minute), `DeviceRegistry` (EPC →
//!   group, rule, ward, active), `Consent` (a patient grants and revokes authorities),
//!   `AuditAnchor` (registered anchorers anchor log roots) and `AuthorityRegistry` (seed
//!   2's layer 2: registrars register laboratories, insurers, pharmacies and hospitals
//!   and bind their certificates' subject ids; only a patient grants or revokes an
//!   organisation's access, see [`authority`]). Roles come from OpenZeppelin's
//!   `AccessControl`; refusals are custom errors, decoded into [`ContractError`].
//! - **Values are exact**: a value is a `(mantissa, scale)` decimal ([`WideDecimal`], the
//!   contracts' `Dec`); no float anywhere. Blood pressure is checked per component
//!   (systolic, diastolic); a waveform block by its lowest and highest physical sample.
//! - **[`Ledger`]** encodes calls, decodes answers, reverts and events, over a
//!   [`Backend`]: [`EmbeddedBackend`] (revm in-process, persisted, the single-machine
//!   default) or [`RpcBackend`] (any JSON-RPC node: Besu QBFT, anvil).
//! - **[`LedgerLocation`]** opens the ledger the one way every program does: embedded
//!   or JSON-RPC, as an [`AccountKey`] read from a 0600 file, or read-only.
//! - **Two kinds of limits.** A value outside a plausibility range is false data (a
//!   working device cannot measure it) and refused; a value past an [`AlarmLimit`] is
//!   clinically abnormal, accepted, and the [`Decision`] carries the [`Alarm`]: which
//!   limit, its [`Priority`] (low, medium, high after IEC 60601-1-8) and the FHIR
//!   [`Interpretation`] (L, H, or LL / HH for the high tier). A reading is never refused
//!   for being abnormal.
//! - **[`RuleBook`]** is the native copy of the rules; it decides exactly as the
//!   contract's `check`. A [`Replica`] (rules and device registry) is bootstrapped by a
//!   query and followed by events through an [`EventFollower`]; the collector and storage
//!   both check against it, and count the rules' per-minute rate with [`RateWindow`] /
//!   [`replica::readings_in_window`].
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wardseal_contracts::Error> {
//! use wardseal_contracts::{
//!     AlarmLimit, CheckInput, EmbeddedChain, Ledger, Priority, Range, TypeRule, Verdict,
//!     WideDecimal,
//! };
//! let dir = tempfile::tempdir().map_err(|e| wardseal_contracts::BackendError::Storage {
//!     path: "tmp".into(),
//!     source: e,
//! })?;
//! let chain = EmbeddedChain::open(dir.path())?;
//! let admin = alloy::primitives::Address::repeat_byte(0x11);
//! let ledger = Ledger::deploy(chain.backend(admin)).await?;
//!
//! // Rule 7: heart rate (code 1) in /min, plausible from 0 to 350, a high-priority alarm
//! // at 40 or below, at most 6 a minute; group 3 follows it.
//! ledger.create_rule(7).await?;
//! let d = WideDecimal::parse;
//! let rule = TypeRule::new(1, "/min", vec![Range::new(d("0")?, d("350")?)?], 6)?
//!     .with_alarms(vec![AlarmLimit::low(0, d("40")?, true, Priority::High)])?;
//! ledger.set_type_rule(7, &rule).await?;
//! ledger.set_group_rule(3, 7).await?;
//!
//! let reading = |value: &str| -> Result<CheckInput, wardseal_contracts::Error> {
//!     Ok(CheckInput {
//!         group: 3,
//!         data_type: 1,
//!         unit: "/min".into(),
//!         components: vec![WideDecimal::parse(value)?],
//!         per_minute: 1,
//!         patient: None,
//!     })
//! };
//! assert_eq!(ledger.check(&reading("72")?).await?.verdict(), Verdict::Allowed);
//! let critical = ledger.check(&reading("25")?).await?;
//! assert!(critical.is_allowed());
//! assert_eq!(critical.alarm().map(|a| a.interpretation().code()), Some("LL"));
//! assert_eq!(ledger.check(&reading("400")?).await?.verdict(), Verdict::AboveMaximum);
//! # Ok(())
//! # }
//! ```

pub mod authority;
pub mod backend;
pub mod bindings;
mod error;
pub mod evaluator;
pub mod follow;
mod ledger;
pub mod model;
pub mod open;
pub mod replica;

pub use authority::{AuthorityBook, AuthorityDecision, Organisation};
pub use backend::{AnyBackend, Backend, EmbeddedBackend, EmbeddedChain, RpcBackend};
pub use error::{AccountKeyError, BackendError, ContractError, Error, RuleError};
pub use evaluator::RuleBook;
pub use follow::{Cursor, EventFollower};
pub use ledger::Ledger;
pub use model::{
    Alarm, AlarmLimit, Anchor, AnchorRecord, CheckInput, Decision, Device, EventPosition,
    Interpretation, LedgerEvent, LimitSource, PatientKey, PatientLimits, PositionedEvent, Priority,
    Range, Role, Rule, Suite, Trigger, TxOutcome, TypeRule, Verdict, WideDecimal,
};
pub use open::{AccountKey, LedgerAccount, LedgerLocation};
pub use replica::{RATE_WINDOW_MICROS, RateWindow, Replica};
