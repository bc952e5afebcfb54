// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @notice Which devices exist: SGTIN-96 EPC → group, rule, ward, active. A device is
///         registered once; a captured or retired device is deactivated for good (give a
///         replacement a new EPC), and collectors follow the DeviceDeactivated event.
contract DeviceRegistry is AccessControl {
    /// @notice The role that registers and deactivates devices.
    bytes32 public constant REGISTRAR_ROLE = keccak256("wardseal.REGISTRAR_ROLE");

    struct Device {
        bool registered;
        bool active;
        uint32 group;
        uint32 ruleId;
        string ward;
    }

    mapping(bytes12 => Device) private _devices;
    bytes12[] private _epcs;

    /// @notice Device `epc` was registered, active, in group `group` with rule `ruleId` in `ward`.
    event DeviceRegistered(bytes12 indexed epc, uint32 group, uint32 ruleId, string ward);
    /// @notice Device `epc` was deactivated: collectors must refuse its readings.
    event DeviceDeactivated(bytes12 indexed epc);

    /// @notice The EPC is already registered (active or not).
    error DeviceAlreadyRegistered(bytes12 epc);
    /// @notice The EPC is not registered.
    error UnknownDevice(bytes12 epc);
    /// @notice The device is already inactive.
    error DeviceInactive(bytes12 epc);
    /// @notice The ward id is empty or longer than 64 bytes.
    error InvalidWard();

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, admin);
    }

    /// @notice Registers device `epc`, active.
    function register(bytes12 epc, uint32 group, uint32 ruleId, string calldata ward)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        if (_devices[epc].registered) revert DeviceAlreadyRegistered(epc);
        uint256 wardLength = bytes(ward).length;
        if (wardLength == 0 || wardLength > 64) revert InvalidWard();
        _devices[epc] = Device({registered: true, active: true, group: group, ruleId: ruleId, ward: ward});
        _epcs.push(epc);
        emit DeviceRegistered(epc, group, ruleId, ward);
    }

    /// @notice Deactivates device `epc` for good.
    function deactivate(bytes12 epc) external onlyRole(REGISTRAR_ROLE) {
        Device storage d = _devices[epc];
        if (!d.registered) revert UnknownDevice(epc);
        if (!d.active) revert DeviceInactive(epc);
        d.active = false;
        emit DeviceDeactivated(epc);
    }

    /// @notice Device `epc` (`registered` false: unknown).
    function device(bytes12 epc)
        external
        view
        returns (bool registered, bool active, uint32 group, uint32 ruleId, string memory ward)
    {
        Device storage d = _devices[epc];
        return (d.registered, d.active, d.group, d.ruleId, d.ward);
    }

    /// @notice How many devices were ever registered.
    function deviceCount() external view returns (uint256) {
        return _epcs.length;
    }

    /// @notice The EPC of the `index`-th registered device.
    function epcAt(uint256 index) external view returns (bytes12) {
        return _epcs[index];
    }
}
