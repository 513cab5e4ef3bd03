/**
 * Imported before libpg-query: its parser (WebAssembly) runs on V8's
 * baseline code only. Optimizing it, which V8 does on background threads
 * once it is hot, makes a parse ~15% faster but takes ~80 MB of compiler
 * memory that the allocator keeps afterwards: most of a proxy's resident
 * memory. Analyses are cached by statement shape, so parses are rare. The
 * parser is the process's only WebAssembly; V8 reads the flag when it
 * compiles a module.
 */
import v8 from 'node:v8';

v8.setFlagsFromString('--liftoff-only');
