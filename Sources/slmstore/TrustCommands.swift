// Signed releases on the command line: `keygen`, `resign`, and the --sign / --trust options
// push, pull and sync share.

import Foundation
import SLMStoreKit

let trustCommands: [Command] = [keygenCommand, resignCommand]

let keygenCommand = Command(
    name: "keygen", summary: "Make an Ed25519 key pair for signing releases",
    usage: "slmstore keygen PATH [--force] [--json]",
    details: """
    Writes the private key to PATH (mode 0600, PEM PKCS#8) and the public key to PATH.pub (PEM),
    the forms `openssl pkey` reads. Give PATH.pub to devices (`--trust`); keep PATH with the
    publisher (`push --sign`). An existing file is never overwritten unless --force.
      --json   key (the public key's hex, as release metadata names it), private, public
    """,
    spec: OptionSpec(flags: ["--force", "--json"])
) { a, _ in
    try requirePositionals(a, "keygen", min: 1, max: 1, usage: "slmstore keygen PATH")
    let path = a.positionals[0]
    let pub = path + ".pub"
    if !a.has("--force") {
        for p in [path, pub] where FileSystem.exists(p) {
            throw SLMError.input(path: p, problem: "already exists; pass --force to replace it")
        }
    }
    let key = try Ed25519PrivateKey.generate()
    try FileSystem.makeDirectories((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent)
    try FileSystem.writeAtomically(Array(key.pem.utf8), to: path, mode: 0o600)
    try FileSystem.writeAtomically(Array(key.publicKey.pem.utf8), to: pub, mode: 0o644)
    if a.has("--json") {
        Output.json(.object(["key": .string(key.publicKey.hex), "private": .string(path), "public": .string(pub)]))
    } else {
        print("wrote \(path) (private, mode 0600) and \(pub) (public)\nkey \(key.publicKey.hex)")
    }
    return 0
}

let resignCommand = Command(
    name: "resign", summary: "Renew a remote's signed release: a new serial and expiry, same content",
    usage: "slmstore resign REMOTE --sign KEY [--expires 7d] [--next-key PUB]... [--previous-key PUB]... [--json]",
    details: """
    For a publisher's cron job: devices refuse a release once it expires, so renew it before then
    without publishing anything new. Versions and stages stay as the last signed release has them.
      --sign KEY       private key file (repeatable: every key signs)
      --expires D      validity from now, e.g. 7d, 12h (default 30d)
      --next-key PUB   public key that signs from the next serial on (key rotation; repeatable)
      --previous-key PUB  a key whose signature on the current release.json is trusted too (repeatable)
      --endpoint URL   S3-compatible endpoint for an s3:// REMOTE
    The current release.json is renewed only if these keys (or --previous-key) signed it, or it is
    the release this store signed last. Otherwise resign stops and names the file: a remote that
    someone else can write may hold a forged release, and renewing it would vouch for it. Recover
    with `slmstore push REMOTE --sign KEY --from-scratch`, which signs only this store's versions.
      \(tlsHelp)
      --json           serial, expires, versions, remote
    """,
    spec: OptionSpec(values: Set(["--sign", "--expires", "--next-key", "--previous-key", "--endpoint"]).union(tlsOptionNames), repeatable: ["--sign", "--next-key", "--previous-key"],
                     flags: ["--json", "--from-scratch"])
) { a, ctx in
    try requirePositionals(a, "resign", min: 1, max: 1, usage: "slmstore resign REMOTE --sign KEY")
    guard let signing = try signingOptions(a, command: "resign") else { throw SLMError.argument("resign: --sign KEY is required") }
    var remoteOptions = cliRemoteOptions()
    remoteOptions.endpoint = a.value("--endpoint")
    remoteOptions.tls = tlsFiles(a)
    let opened = try Remotes.open(a.positionals[0], options: remoteOptions)
    guard let remote = opened as? any StoreBackend else {
        throw SLMError.argument("resign: \(opened.location) is read-only; resign the directory or bucket itself")
    }
    let store = try ctx.openStore(create: true)
    let r = try store.signRelease(on: remote, signing: signing, renewOnly: true)
    printRelease(r, json: a.has("--json"), remote: remote.location)
    return 0
}

func printRelease(_ r: ReleaseSigningResult, json: Bool, remote: String) {
    let expires = Timestamp.format(time_t(r.expires))
    if json {
        Output.json(releaseJSON(r))
    } else {
        print("signed release serial \(r.serial) of \(remote) (remote id \(r.remote)): \(Output.count(r.versions, "version")), expires \(expires)")
        if !r.unsigned.isEmpty {
            print("  not signed (neither in this store nor in the previous release): \(r.unsigned.joined(separator: ", "))")
        }
        if r.enrolledDevices > 0 { print("  \(r.enrolledDevices) enrolled \(r.enrolledDevices == 1 ? "device" : "devices") named (devices.json)") }
    }
    // What the remote states otherwise than this store is signed as the store has it: say so.
    for o in r.overridden { Output.warning("\(remote): not signed as the remote states it: \(o)") }
}

/// A signing's result as JSON (push --json's "release", resign --json).
func releaseJSON(_ r: ReleaseSigningResult) -> JSONValue {
    .object(["serial": .int(r.serial), "expires": .string(Timestamp.format(time_t(r.expires))), "versions": .int(r.versions),
             "remote": .string(r.remote), "unsigned": .array(r.unsigned.map { .string($0) }),
             "overridden": .array(r.overridden.map { .string($0) }), "enrolled_devices": .int(UInt64(r.enrolledDevices))])
}

/// --sign KEY... --expires D --next-key PUB...; nil without --sign.
func signingOptions(_ a: ParsedArguments, command: String) throws -> ReleaseSigning? {
    let paths = a.all("--sign")
    if paths.isEmpty {
        for o in ["--expires", "--next-key", "--previous-key", "--from-scratch"] where a.values[o] != nil || a.has(o) {
            throw SLMError.argument("\(command): \(o) needs --sign KEY")
        }
        return nil
    }
    var s = ReleaseSigning(keys: try paths.map { try Ed25519PrivateKey.read(file: $0) })
    if let e = a.value("--expires") {
        let seconds = try parseDuration(e, option: "--expires")
        guard seconds >= 60 else { throw SLMError.argument("\(command): --expires \(e) is shorter than a minute") }
        guard seconds <= Double(SignedRelease.maxValidity) else {
            throw SLMError.argument("\(command): --expires \(e) is longer than the \(SignedRelease.maxValidity / 86400) days a release may be valid")
        }
        s.validity = Int64(seconds)
    }
    let next = try a.all("--next-key").map { try Ed25519PublicKey.read(file: $0) }
    if !next.isEmpty { s.nextKeys = next }
    s.previousKeys = try a.all("--previous-key").map { try Ed25519PublicKey.read(file: $0) }
    s.fromScratch = a.has("--from-scratch")
    return s
}

/// --trust PUB... and SLMSTORE_TRUST (colon-separated files).
func trustedKeys(_ a: ParsedArguments) throws -> [Ed25519PublicKey] {
    var files = a.all("--trust")
    if let env = ProcessInfo.processInfo.environment["SLMSTORE_TRUST"], !env.isEmpty {
        files += env.split(separator: ":").map(String.init)
    }
    return try files.map { try Ed25519PublicKey.read(file: $0) }
}

/// --cacert, --cert and --key, shared by every command that reaches a remote.
let tlsOptionNames: Set<String> = ["--cacert", "--cert", "--key"]
/// Its first line is placed at an option's indentation; the rest carry their own (two spaces).
let tlsHelp = """
--cacert FILE   PEM CA bundle to trust for https (a private CA) instead of the system's
                  (also SLMSTORE_CA_BUNDLE)
  --cert FILE     PEM client certificate for servers that require one (mutual TLS; also
  --key FILE      SLMSTORE_CLIENT_CERT and SLMSTORE_CLIENT_KEY). Proxies: HTTPS_PROXY,
                  HTTP_PROXY and NO_PROXY, as curl reads them.
"""

func tlsFiles(_ a: ParsedArguments) -> Remotes.TLSFiles {
    Remotes.TLSFiles(caBundle: a.value("--cacert"), clientCertificate: a.value("--cert"), clientKey: a.value("--key"))
}
