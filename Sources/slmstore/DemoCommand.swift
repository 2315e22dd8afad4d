// `slmstore demo`: a self-contained walk-through on a synthetic model, needing no data.

import SLMStoreKit
import SLMSynthetic
#if canImport(Glibc)
import Glibc
#endif

let demoCommand = Command(
    name: "demo", summary: "Run a built-in demo: add a synthetic model and a fine-tune, show what the update cost",
    usage: "slmstore demo [--dir DIR] [--size MiB]",
    details: """
    Writes a small bf16 model of Llama-like layout (safetensors + config.json) and a fine-tuned
    version of it (10% of tensors changed), adds both to a fresh store, shows how few new bytes
    the second version cost, checks one out again and verifies the store.
      --dir DIR    where to put the demo files and its store (default: a new directory under /tmp)
      --size MiB   size of the model (default 64)
    """,
    spec: OptionSpec(values: ["--dir", "--size"])
) { a, ctx in
    try requirePositionals(a, "demo", min: 0, max: 0, usage: "slmstore demo [--dir DIR]")
    let sizeMiB = Int(a.value("--size") ?? "64") ?? -1
    guard (1...65536).contains(sizeMiB) else { throw SLMError.argument("demo: --size must be a number of MiB from 1 to 65536") }
    let dir = a.value("--dir") ?? "/tmp/slmstore-demo-\(FileSystem.randomHex(4))"
    if FileSystem.exists(dir), !(try FileSystem.listDirectory(dir)).isEmpty {
        throw SLMError.input(path: dir, problem: "demo directory exists and is not empty")
    }
    let storeDir = ctx.explicitStore ?? dir + "/store"
    func step(_ s: String) { print("\n$ \(s)") }
    print("slmstore demo in \(dir)")
    let v1 = SyntheticModel.llamaLike(targetBytes: sizeMiB << 20)
    let (v2, changed) = v1.fineTuned(fraction: 0.10)
    // A full fine-tune nudges every weight a little: no chunk repeats, so it is stored (and
    // shipped) as tensor deltas against the previous version.
    let v3 = v2.fullFineTune(scale: 0.001)
    for (sub, model) in [("intent-v1", v1), ("intent-v1.1", v2), ("intent-v1.2", v3)] {
        try FileSystem.makeDirectories("\(dir)/\(sub)")
        try model.write(to: "\(dir)/\(sub)/model.safetensors")
        try FileSystem.writeAtomically(model.configJSON, to: "\(dir)/\(sub)/config.json")
        try FileSystem.writeAtomically(Array("{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}\n".utf8), to: "\(dir)/\(sub)/tokenizer.json")
    }
    print("wrote \(dir)/intent-v1 (\(v1.tensors.count) bf16 tensors, \(v1.totalTensorBytes >> 20) MiB), intent-v1.1 (\(changed >> 20) MiB of tensors fine-tuned) and intent-v1.2 (every weight nudged by a full fine-tune)")
    let me = CommandLine.arguments[0]
    func run(_ args: [String]) throws {
        step("slmstore " + args.joined(separator: " "))
        fflush(stdout)
        let status = try runChild(me, ["--store", storeDir] + args)
        guard status == 0 else { throw SLMError.failed("demo step failed: slmstore \(args.joined(separator: " ")) exited \(status)") }
    }
    try run(["add", "demo/intent-classifier@1.0.0", "\(dir)/intent-v1"])
    try run(["add", "demo/intent-classifier@1.1.0", "\(dir)/intent-v1.1"])
    try run(["diff", "demo/intent-classifier@1.0.0", "demo/intent-classifier@1.1.0"])
    try run(["add", "demo/intent-classifier@1.2.0", "\(dir)/intent-v1.2"])
    try run(["diff", "demo/intent-classifier@1.1.0", "demo/intent-classifier@1.2.0"])
    try run(["ls"])
    try run(["log", "demo/intent-classifier"])
    try run(["checkout", "demo/intent-classifier@1.2.0", "\(dir)/checkout"])
    try run(["verify"])
    print("\nThe second version stored only its changed tensors' chunks; the third, whose every weight moved, stored")
    print("element-wise deltas against the second. Store: \(storeDir)")
    // Say where everything went and how to get rid of it: the demo leaves its files for a look.
    let used = (try? FileSystem.listDirectory(dir))?.reduce(UInt64(0)) { total, name in total + diskUsage("\(dir)/\(name)") } ?? 0
    print("Everything above is in \(dir) (\(Output.bytes(used))): try `slmstore --store \(storeDir) ls`, and remove it with `rm -rf \(dir)`.")
    return 0
}

/// Runs a child process with inherited stdio and returns its exit status.
func runChild(_ path: String, _ args: [String]) throws -> Int32 {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    let rc = posix_spawn(&pid, path, nil, nil, argv, environ)
    guard rc == 0 else { throw SLMError.io(path: path, operation: "spawn", errno: rc) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 { if errno != EINTR { throw SLMError.io(path: path, operation: "wait", errno: errno) } }
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// Bytes of the regular files under `path`.
private func diskUsage(_ path: String) -> UInt64 {
    guard FileSystem.isDirectory(path) else { return FileSystem.fileSize(path) ?? 0 }
    return ((try? FileSystem.listDirectory(path)) ?? []).reduce(UInt64(0)) { $0 + diskUsage("\(path)/\($1)") }
}
