// A Stryker reporter that appends one JSON line per tested mutant to
// reports/mutation/<target>.jsonl as the run goes (the json and html reporters
// write only at the end, so a run stopped early leaves nothing). Loaded by
// stryker.config.mjs (appendPlugins); the file is named by MUTATION_REPORT_NAME.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { declareClassPlugin, PluginKind } from '@stryker-mutator/api/plugin';

class JsonlReporter {
  static inject = [];
  constructor() {
    mkdirSync('reports/mutation', { recursive: true });
    this.file = `reports/mutation/${process.env.MUTATION_REPORT_NAME ?? 'run'}.jsonl`;
    writeFileSync(this.file, '');
  }
  onMutantTested(m) {
    const line = {
      file: m.fileName,
      line: m.location.start.line,
      column: m.location.start.column,
      mutator: m.mutatorName,
      replacement: m.replacement,
      status: m.status,
      killedBy: m.killedBy,
      statusReason: m.status === 'Survived' ? undefined : m.statusReason?.slice(0, 200),
    };
    appendFileSync(this.file, `${JSON.stringify(line)}\n`);
  }
}

export const strykerPlugins = [declareClassPlugin(PluginKind.Reporter, 'jsonl', JsonlReporter)];
