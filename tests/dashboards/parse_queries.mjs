// Parse LogQL and TraceQL with Grafana's own lezer grammars, the ones its query editors use.
//
// Input (stdin): JSON array of {"id": string, "language": "logql" | "traceql", "query": string}.
// Output (stdout): JSON array of {"id", "ok": boolean, "error": string | null}, same order.
// A query is accepted when its syntax tree has no error node; lezer recovers from errors instead
// of throwing, so the tree must be walked. Grafana variables must already be substituted.
import { parser as logqlParser } from '@grafana/lezer-logql';
import { parser as traceqlParser } from '@grafana/lezer-traceql';

const PARSERS = { logql: logqlParser, traceql: traceqlParser };

function firstError(parser, query) {
  const tree = parser.parse(query);
  let found = null;
  tree.iterate({
    enter(node) {
      if (found === null && node.type.isError) {
        found = `syntax error at ${node.from}: ...${query.slice(Math.max(0, node.from - 20), node.to + 20)}...`;
      }
      return found === null;
    },
  });
  return found;
}

function check({ id, language, query }) {
  const parser = PARSERS[language];
  if (!parser) return { id, ok: false, error: `unknown language ${language}` };
  if (!query || !query.trim()) return { id, ok: false, error: 'empty query' };
  const error = firstError(parser, query);
  return { id, ok: error === null, error };
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const results = JSON.parse(input).map(check);
  process.stdout.write(JSON.stringify(results));
});
