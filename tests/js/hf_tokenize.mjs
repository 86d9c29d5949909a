// Hugging Face's own JavaScript tokenizer (@huggingface/tokenizers) as a reference for mxq's:
//   node hf_tokenize.mjs TOKENIZER_JSON LIST_FILE
// LIST_FILE: one text file path per line. Prints one line per file: its token ids (the
// post-processor's special tokens included), separated by spaces.
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [tokPath, listPath] = process.argv.slice(2);
const json = JSON.parse(readFileSync(tokPath, "utf8"));
const tok = new Tokenizer(json, {});
const out = [];
for (const path of readFileSync(listPath, "utf8").split("\n").filter((l) => l.length > 0)) {
  const text = readFileSync(path, "utf8");
  out.push(tok.encode(text).ids.join(" "));
}
process.stdout.write(out.join("\n") + "\n");
