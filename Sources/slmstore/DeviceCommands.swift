// `device`: the publisher enrolls the devices whose reports count (and revokes them), and a
// device shows the id and key it reports with, for enrolling it out of band.

import Foundation
import SLMStoreKit

let deviceCommand = Command(
    name: "device", summary: "Enroll the devices whose reports count (publisher), or show a device's id and key",
    usage: "slmstore device enroll REMOTE DEVICE-ID... [--key HEX] | device revoke REMOTE DEVICE-ID... | device list REMOTE | device show --to DIR",
    details: """
    A device makes an Ed25519 key on its first `sync` (or `pull --to DIR --report`) beside its id
    (DIR/.slmstore-device-key, mode 0600) and signs every report with it. `fleet` counts only the
    reports of devices enrolled for that remote in this store, each checked against its key.
      enroll REMOTE ID...   enroll devices. With --key HEX (one id): that key, as `device show`
                            printed it on the device (out of band, the safest). Without: the key of
                            the device's signed report now at REMOTE/reports/ID.json (enrolled as you
                            approve it, as an operator accepts a pending device); an unsigned or
                            invalid report is refused. A device already enrolled under another key
                            is refused unless --force (a device that was reset)
      revoke REMOTE ID...   remove devices; their reports stop counting
      list REMOTE           the enrolled devices, their keys and since when
      show --to DIR         on a device: its id and public key (made if absent)
    The enrolled set is published beside the release as REMOTE/devices.json and named by digest in
    release.json at the next `push --sign`.
      --endpoint URL  S3-compatible endpoint for an s3:// REMOTE
      \(tlsHelp)
      --json   enroll/revoke: enrolled, revoked, count; list: devices [{id, key, enrolled}];
               show: device, key
    """,
    spec: OptionSpec(values: Set(["--key", "--to", "--endpoint"]).union(tlsOptionNames), flags: ["--json", "--force"])
) { a, ctx in
    guard let sub = a.positionals.first else {
        throw SLMError.argument("device: missing subcommand (usage: slmstore device enroll|revoke|list|show …)")
    }
    let json = a.has("--json")
    if sub == "show" {
        try requirePositionals(a, "device show", min: 1, max: 1, usage: "slmstore device show --to DIR")
        guard let to = a.value("--to") else { throw SLMError.argument("device show: --to DIR is required (the device's install directory)") }
        let id = try DeviceIdentity.resolve(root: to, explicit: nil)
        let key = try DeviceKey.resolve(root: to)
        if json { Output.json(.object(["device": .string(id), "key": .string(key.publicKey.hex)])) } else { print("device \(id)\nkey \(key.publicKey.hex)") }
        return 0
    }
    guard ["enroll", "revoke", "list"].contains(sub) else {
        throw SLMError.argument("device: unknown subcommand \"\(sub)\" (enroll, revoke, list or show)")
    }
    guard a.positionals.count >= 2 else { throw SLMError.argument("device \(sub): missing REMOTE (usage: slmstore device \(sub) REMOTE\(sub == "list" ? "" : " DEVICE-ID..."))") }
    var remoteOptions = cliRemoteOptions()
    remoteOptions.endpoint = a.value("--endpoint")
    remoteOptions.tls = tlsFiles(a)
    let remote = try Remotes.open(a.positionals[1], options: remoteOptions)
    let store = try ctx.openStore()
    var set = try DeviceEnrollment.load(store: store, location: remote.location)
    let ids = Array(a.positionals.dropFirst(2))
    switch sub {
    case "list": return try listDevices(a, set: set, remote: remote, json: json)
    case "revoke": return try revokeDevices(ids, set: &set, store: store, remote: remote, json: json)
    default: return try enrollDevices(ids, a, set: &set, store: store, remote: remote, json: json)
    }
}

/// `device list REMOTE`.
private func listDevices(_ a: ParsedArguments, set: DeviceEnrollment, remote: any ReadableBackend, json: Bool) throws -> Int32 {
    try requirePositionals(a, "device list", min: 2, max: 2, usage: "slmstore device list REMOTE")
    let rows = set.devices.sorted { $0.key < $1.key }
    if json {
        Output.json(.object(["devices": .array(rows.map { .object(["id": .string($0.key), "key": .string($0.value.key.hex), "enrolled": .string($0.value.enrolled)]) })]))
    } else {
        print("\(rows.count) enrolled \(rows.count == 1 ? "device" : "devices") for \(remote.location)")
        var table = [["DEVICE", "KEY", "ENROLLED"]]
        for (id, d) in rows { table.append([id, String(d.key.hex.prefix(16)) + "…", d.enrolled]) }
        if rows.count > 0 { print(Output.table(table)) }
    }
    return 0
}

/// `device revoke REMOTE ID...`.
private func revokeDevices(_ ids: [String], set: inout DeviceEnrollment, store: Store, remote: any ReadableBackend, json: Bool) throws -> Int32 {
    guard !ids.isEmpty else { throw SLMError.argument("device revoke: name at least one DEVICE-ID") }
    for id in ids where set.devices[id] == nil { throw SLMError.notFound("device revoke: \(id) is not enrolled for \(remote.location)") }
    for id in ids { set.devices[id] = nil }
    try set.save(store: store, location: remote.location)
    if json { Output.json(.object(["revoked": .array(ids.map { .string($0) }), "count": .int(UInt64(set.devices.count))])) }
    else { print("revoked \(ids.joined(separator: ", ")); \(set.devices.count) enrolled (published at the next push --sign)") }
    return 0
}

/// `device enroll REMOTE ID... [--key HEX] [--force]`: the key given, or the one the device's
/// signed report at REMOTE names.
private func enrollDevices(_ ids: [String], _ a: ParsedArguments, set: inout DeviceEnrollment, store: Store, remote: any ReadableBackend,
                           json: Bool) throws -> Int32 {
    guard !ids.isEmpty else { throw SLMError.argument("device enroll: name at least one DEVICE-ID") }
    if a.value("--key") != nil && ids.count != 1 { throw SLMError.argument("device enroll: --key goes with one DEVICE-ID") }
    var keys: [String: Ed25519PublicKey] = [:]
    for id in ids {
        guard DeviceEnrollment.isValidDeviceID(id) else {
            throw SLMError.argument("device enroll: \"\(Output.terminalSafe(id, keepNewlines: false))\" is not an id a device can be enrolled under (1-128 characters of A-Z a-z 0-9 . _ -, not starting with .)")
        }
        if let hex = a.value("--key") {
            guard let k = Hex.decode(hex).flatMap(Ed25519PublicKey.init(raw:)) else { throw SLMError.argument("device enroll: --key must be 64 hex digits (an Ed25519 public key, as `device show` prints it)") }
            keys[id] = k
            continue
        }
        let path = "\(DeviceReport.directory)/\(DeviceReport.fileName(device: id))"
        guard let bytes = try remote.read(path, limit: DeviceReport.maxEncodedSize) else {
            throw SLMError.notFound("device enroll: \(remote.location)/\(path) does not exist: the device has not reported yet; run its sync once, or give --key from `slmstore device show` on it")
        }
        let r = try SignedDeviceReport.decode(bytes, source: "\(remote.location)/\(path)")
        guard let k = r.key, r.signatureValid, r.report.device == id else {
            throw SLMError.untrusted(source: "\(remote.location)/\(path)", problem: "is not a report of \(id) signed by the key it names; enroll it with --key from `slmstore device show` on the device")
        }
        keys[id] = k
    }
    for (id, k) in keys {
        if let old = set.devices[id], old.key != k, !a.has("--force") {
            throw SLMError.conflict("device enroll: \(id) is enrolled with key \(old.key.hex.prefix(16))…, not \(k.hex.prefix(16))…; pass --force if the device was reset")
        }
    }
    guard set.devices.count + keys.keys.filter({ set.devices[$0] == nil }).count <= DeviceEnrollment.maxDevices else {
        throw SLMError.failed("device enroll: a remote enrolls at most \(DeviceEnrollment.maxDevices) devices")
    }
    let now = Timestamp.now()
    for (id, k) in keys where set.devices[id]?.key != k { set.devices[id] = .init(key: k, enrolled: now) }
    try set.save(store: store, location: remote.location)
    if json { Output.json(.object(["enrolled": .array(ids.map { .string($0) }), "count": .int(UInt64(set.devices.count))])) }
    else { print("enrolled \(ids.joined(separator: ", ")); \(set.devices.count) enrolled for \(remote.location) (published at the next push --sign)") }
    return 0
}
