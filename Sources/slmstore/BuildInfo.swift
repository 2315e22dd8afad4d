// Where this binary came from. Packaging/build-deb writes the commit into a copy of this file
// before a release build; a developer build says "unknown".

let buildCommit = "unknown"
