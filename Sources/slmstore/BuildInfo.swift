// Where this binary came from. Packaging/build-deb writes the commit into a copy of this file
// before a release build; a build in a checkout finds it from the checkout it was built in.

import Foundation

let buildCommit = "unknown"

/// The commit this binary was built from: the one written in at packaging, else, for a build
/// inside a git checkout (`swift build`, `swift run`), that checkout's HEAD ("-dirty" with
/// uncommitted changes to the sources), else "unknown".
func sourceCommit() -> String {
    guard buildCommit == "unknown" else { return buildCommit }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<8 {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent(".git").path),
           FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            func git(_ args: [String]) -> (status: Int32, out: String) {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                p.arguments = ["git", "-C", dir.path] + args
                let pipe = Pipe()
                p.standardOutput = pipe
                p.standardError = FileHandle.nullDevice
                guard (try? p.run()) != nil else { return (-1, "") }
                let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                return (p.terminationStatus, out.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            let head = git(["rev-parse", "--short=12", "HEAD"])
            guard head.status == 0, !head.out.isEmpty else { return "unknown" }
            let clean = git(["diff", "--quiet", "HEAD", "--", "Sources", "Package.swift"]).status == 0
            return head.out + (clean ? "" : "-dirty")
        }
        dir.deleteLastPathComponent()
    }
    return "unknown"
}
