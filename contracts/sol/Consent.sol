// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice A patient's consent to authorities (hospitals, labs, insurers): only the
///         patient's own account grants or revokes, anyone may read. Accounts are
///         pseudonymous; no patient data is stored.
contract Consent {
    mapping(address => mapping(address => bool)) private _allowed;

    /// @notice `patient` allowed `authority` to access their data.
    event ConsentGranted(address indexed patient, address indexed authority);
    /// @notice `patient` withdrew `authority`'s access.
    event ConsentRevoked(address indexed patient, address indexed authority);

    /// @notice Only the patient's own account may change the patient's consent.
    error NotPatient(address caller, address patient);
    /// @notice The authority is the zero address.
    error ZeroAuthority();
    /// @notice The authority already has the patient's consent.
    error AlreadyGranted(address patient, address authority);
    /// @notice The authority does not have the patient's consent.
    error NotGranted(address patient, address authority);

    modifier onlyPatient(address patient) {
        if (msg.sender != patient) revert NotPatient(msg.sender, patient);
        _;
    }

    /// @notice `patient` (the caller) allows `authority`.
    function grant(address patient, address authority) external onlyPatient(patient) {
        if (authority == address(0)) revert ZeroAuthority();
        if (_allowed[patient][authority]) revert AlreadyGranted(patient, authority);
        _allowed[patient][authority] = true;
        emit ConsentGranted(patient, authority);
    }

    /// @notice `patient` (the caller) withdraws `authority`'s access.
    function revoke(address patient, address authority) external onlyPatient(patient) {
        if (!_allowed[patient][authority]) revert NotGranted(patient, authority);
        _allowed[patient][authority] = false;
        emit ConsentRevoked(patient, authority);
    }

    /// @notice Whether `authority` has `patient`'s consent.
    function allowed(address patient, address authority) external view returns (bool) {
        return _allowed[patient][authority];
    }
}
