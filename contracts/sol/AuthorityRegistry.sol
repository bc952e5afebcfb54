// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @notice Seed 2's layer 2: the outside organisations (laboratories, insurers, pharmacies,
///         other hospitals) that may read a patient's records, and each patient's consent
///         to them.
///
///         A registrar registers an organisation with its kind, binds the subject ids of
///         its certificates to it, and deactivates (or reactivates) it. Only a patient's
///         own account grants or revokes an organisation's access to that patient's
///         records, and it does so per organisation: a renewed or additional certificate
///         bound to the same organisation keeps the consent. Organisation and subject ids
///         are the pseudonymous ids of the certificates' identity extension (1 to 64
///         bytes); nothing about a patient is stored but their account.
contract AuthorityRegistry is AccessControl {
    /// @notice The role that registers, binds and deactivates organisations.
    bytes32 public constant AUTHORITY_REGISTRAR_ROLE = keccak256("wardseal.AUTHORITY_REGISTRAR_ROLE");

    /// @notice Kinds are 0 laboratory, 1 insurer, 2 pharmacy, 3 hospital (the identity
    ///         extension's `authorityKind` values).
    uint8 public constant KIND_COUNT = 4;

    struct Organisation {
        bool registered;
        bool active;
        uint8 kind;
    }

    mapping(bytes32 => Organisation) private _organisations;
    string[] private _organisationIds;
    mapping(bytes32 => string) private _subjectOrganisation;
    mapping(address => mapping(bytes32 => bool)) private _granted;

    /// @notice Organisation `organisation` was registered, active, as a `kind`.
    event OrganisationRegistered(string organisation, uint8 kind);
    /// @notice Organisation `organisation` was deactivated (`active` false) or reactivated.
    event OrganisationActiveSet(string organisation, bool active);
    /// @notice Certificates with subject id `subject` now act for `organisation`.
    event SubjectBound(string subject, string organisation);
    /// @notice Certificates with subject id `subject` no longer act for `organisation`.
    event SubjectUnbound(string subject, string organisation);
    /// @notice `patient` allowed `organisation` to read their records.
    event AccessGranted(address indexed patient, string organisation);
    /// @notice `patient` withdrew `organisation`'s access to their records.
    event AccessRevoked(address indexed patient, string organisation);

    /// @notice An id is empty or longer than 64 bytes.
    error InvalidId();
    /// @notice The kind is not one of the four kinds.
    error InvalidKind(uint8 kind);
    /// @notice The organisation is already registered.
    error OrganisationAlreadyRegistered(string organisation);
    /// @notice The organisation is not registered.
    error UnknownOrganisation(string organisation);
    /// @notice The organisation is already active (or already inactive).
    error OrganisationActiveAlready(string organisation, bool active);
    /// @notice The subject is already bound to an organisation.
    error SubjectAlreadyBound(string subject, string organisation);
    /// @notice The subject is bound to no organisation.
    error UnknownSubject(string subject);
    /// @notice The organisation already has the patient's consent.
    error AccessAlreadyGranted(address patient, string organisation);
    /// @notice The organisation does not have the patient's consent.
    error AccessNotGranted(address patient, string organisation);

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(AUTHORITY_REGISTRAR_ROLE, admin);
    }

    function _key(string calldata id) private pure returns (bytes32) {
        uint256 length = bytes(id).length;
        if (length == 0 || length > 64) revert InvalidId();
        return keccak256(bytes(id));
    }

    function _registered(string calldata organisation) private view returns (bytes32 key) {
        key = _key(organisation);
        if (!_organisations[key].registered) revert UnknownOrganisation(organisation);
    }

    /// @notice Registers `organisation`, active, as a `kind`.
    function register(string calldata organisation, uint8 kind) external onlyRole(AUTHORITY_REGISTRAR_ROLE) {
        bytes32 key = _key(organisation);
        if (kind >= KIND_COUNT) revert InvalidKind(kind);
        if (_organisations[key].registered) revert OrganisationAlreadyRegistered(organisation);
        _organisations[key] = Organisation({registered: true, active: true, kind: kind});
        _organisationIds.push(organisation);
        emit OrganisationRegistered(organisation, kind);
    }

    /// @notice Deactivates (`active` false) or reactivates `organisation`. An inactive
    ///         organisation reads nothing; its bindings and the patients' consent stay.
    function setActive(string calldata organisation, bool active) external onlyRole(AUTHORITY_REGISTRAR_ROLE) {
        Organisation storage o = _organisations[_registered(organisation)];
        if (o.active == active) revert OrganisationActiveAlready(organisation, active);
        o.active = active;
        emit OrganisationActiveSet(organisation, active);
    }

    /// @notice Binds certificate subject id `subject` to `organisation`.
    function bindSubject(string calldata subject, string calldata organisation)
        external
        onlyRole(AUTHORITY_REGISTRAR_ROLE)
    {
        _registered(organisation);
        bytes32 key = _key(subject);
        string storage bound = _subjectOrganisation[key];
        if (bytes(bound).length != 0) revert SubjectAlreadyBound(subject, bound);
        _subjectOrganisation[key] = organisation;
        emit SubjectBound(subject, organisation);
    }

    /// @notice Unbinds certificate subject id `subject` from its organisation.
    function unbindSubject(string calldata subject) external onlyRole(AUTHORITY_REGISTRAR_ROLE) {
        bytes32 key = _key(subject);
        string memory organisation = _subjectOrganisation[key];
        if (bytes(organisation).length == 0) revert UnknownSubject(subject);
        delete _subjectOrganisation[key];
        emit SubjectUnbound(subject, organisation);
    }

    /// @notice The caller (a patient's account) allows `organisation` to read their records.
    function grant(string calldata organisation) external {
        bytes32 key = _registered(organisation);
        if (_granted[msg.sender][key]) revert AccessAlreadyGranted(msg.sender, organisation);
        _granted[msg.sender][key] = true;
        emit AccessGranted(msg.sender, organisation);
    }

    /// @notice The caller (a patient's account) withdraws `organisation`'s access.
    function revoke(string calldata organisation) external {
        bytes32 key = _key(organisation);
        if (!_granted[msg.sender][key]) revert AccessNotGranted(msg.sender, organisation);
        _granted[msg.sender][key] = false;
        emit AccessRevoked(msg.sender, organisation);
    }

    /// @notice Organisation `organisation` (`registered` false: unknown).
    function organisationOf(string calldata organisation)
        external
        view
        returns (bool registered, bool active, uint8 kind)
    {
        Organisation storage o = _organisations[_key(organisation)];
        return (o.registered, o.active, o.kind);
    }

    /// @notice The organisation certificate subject id `subject` acts for ("" if none).
    function subjectOrganisation(string calldata subject) external view returns (string memory) {
        return _subjectOrganisation[_key(subject)];
    }

    /// @notice Whether `patient` allows `organisation` to read their records.
    function granted(address patient, string calldata organisation) external view returns (bool) {
        return _granted[patient][_key(organisation)];
    }

    /// @notice How many organisations were ever registered.
    function organisationCount() external view returns (uint256) {
        return _organisationIds.length;
    }

    /// @notice The id of the `index`-th registered organisation.
    function organisationAt(uint256 index) external view returns (string memory) {
        return _organisationIds[index];
    }
}
