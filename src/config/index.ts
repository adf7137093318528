/**
 * src/config/ owns configuration: one declarative schema per CLI role, read
 * from a JSON file, the environment and flags (flags > env > file > defaults),
 * validated once with messages that name the source and the option, then
 * frozen (DESIGN.md §10).
 *
 * - config.ts   defineConfig / loadConfig / configHelp: the entry points
 * - schema.ts   option spec types and schema compilation
 * - sources.ts  argv, environment and config-file readers ("did you mean")
 * - convert.ts  text → typed value per option type
 * - values.ts   duration and size parsing shared by the converters
 * - help.ts     --help text generated from the schema
 *
 * Library callers do not go through here: they pass option objects, which
 * each layer validates with src/util/options.ts.
 */
export * from './config.js'
