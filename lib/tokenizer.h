/*
 * tokenizer.h -- Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama-3,
 * Qwen2 and their kin), giving the ids the HF `tokenizers` library gives.
 *
 * What a tokenizer.json may hold (anything else is refused by name, status 1):
 *
 *   added_tokens    special and non-special, with special, lstrip, rstrip,
 *                   single_word and normalized honoured.  Ids are assigned the
 *                   way HF 0.23 assigns them on load (the id written in the
 *                   file only where HF's rule gives it, as it does for every
 *                   file HF wrote).  Matching is leftmost-longest over the raw
 *                   text for normalized=false tokens, then over each
 *                   normalized piece for normalized=true ones, which decode
 *                   to their normalized form (HF's normalized_cache).
 *   normalizer      null, NFC, or a Sequence of those.
 *   pre_tokenizer   ByteLevel (add_prefix_space, use_regex with the GPT-2
 *                   regex), Split (pattern {"Regex": ..} or {"String": ..};
 *                   behavior Isolated, Removed, MergedWithPrevious,
 *                   MergedWithNext or Contiguous; invert), Digits
 *                   (individual_digits), and Sequence of those.  ByteLevel
 *                   must come last: the model sees byte-level symbols.
 *   truncation      null; padding null or one that leaves a single sequence
 *                   as it is.
 *   model           BPE: vocab, merges ("a b" strings or ["a", "b"] pairs),
 *                   ignore_merges, unk_token and fuse_unk (a byte whose symbol
 *                   is not in the vocab becomes unk_token, or is dropped when
 *                   there is none, as in HF), dropout null or 0.  Refused:
 *                   byte_fallback, continuing_subword_prefix,
 *                   end_of_word_suffix.
 *   post_processor  null, ByteLevel (offsets only: no effect on ids),
 *                   TemplateProcessing (its "single" template), and Sequence
 *                   of those with at most one TemplateProcessing.
 *   decoder         null (tokens joined with spaces, as HF) or ByteLevel.
 *
 * Regular expressions are HF's Oniguruma (Ruby syntax) ones run on PCRE2 with
 * UTF and UCP.  Where the two differ they are rewritten to Oniguruma's
 * meaning: ^ and $ match at line ends; \s is Unicode White_Space (U+180E is
 * not a space); \w is Oniguruma's word class; \h is a hex digit; and \d, \w
 * and \p{L}, \p{Lu}, \p{Ll}, \p{Lm}, \p{Lo}, \p{M}, \p{N}, \p{Nd}, \p{No},
 * \p{P}, \p{S} take in the code points Unicode 15 and 16 added, which HF's
 * tables have and PCRE2 10.42's (Unicode 14) lack.  test_tokenizer checks 27
 * such classes against HF on every code point.  Not rewritten: the negated
 * escapes (\S, \W, \D, \H, \P{..}) inside a [...] class, other properties
 * and scripts (\p{Mn}, \p{Han}, ...), and [[:posix:]] classes.  NFC is
 * utf8proc's (Unicode 15).  Text must be valid UTF-8 (status 1 otherwise), as
 * HF only takes strings.
 *
 * A tokenizer is read-only after tok_load: any number of threads may encode
 * and decode with it at once.
 */
#ifndef MPU_TOKENIZER_H
#define MPU_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct tokenizer tokenizer;

/* Parses tokenizer.json (json/len); tokenizer_config (may be NULL) is the
 * content of tokenizer_config.json, used for bos/eos/pad and chat_template.
 * Status 1 for a file that is not a tokenizer this code can run, 2 for
 * memory. */
int tok_load(tokenizer **out, const char *json, size_t len, const char *tokenizer_config, size_t config_len,
             mpu_err *e);
void tok_free(tokenizer *t);

/* Appends the ids of text to *ids (grown with realloc; *n updated, *cap is its
 * capacity).  add_special: apply the post-processor's special tokens (e.g.
 * Llama-3's <|begin_of_text|>), as HF's add_special_tokens=True.  Special
 * tokens written in the text are always recognised, as in HF. */
int tok_encode(const tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
               size_t *cap, mpu_err *e);

/* Decodes ids to malloc'd UTF-8 text (NUL-terminated, *len without the NUL).
 * skip_special leaves out special added tokens.  As in HF, an id that names
 * no token is left out, and bytes that are not valid UTF-8 become U+FFFD. */
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text, size_t *len,
               mpu_err *e);

int32_t tok_token_id(const tokenizer *t, const char *token);      /* -1 if absent */
const char *tok_token_text(const tokenizer *t, int32_t id);      /* the token as written in tokenizer.json; NULL if none */
int tok_is_special(const tokenizer *t, int32_t id);              /* a special added token */
size_t tok_vocab_size(const tokenizer *t);                       /* highest id + 1 including added tokens */

/* bos_token, eos_token and pad_token of tokenizer_config.json (a string or
 * an {"content": ..} object); where the config does not name one, the special
 * added token "<|bos|>", "<|eos|>" or "<|pad|>" if there is one (the names
 * tok_byte_level_json uses).  -1 if unknown. */
int32_t tok_bos(const tokenizer *t), tok_eos(const tokenizer *t), tok_pad(const tokenizer *t);

/* The PCRE2 pattern (compiled with UTF, UCP and MULTILINE) that mpu runs for
 * a tokenizer.json (Oniguruma) pattern; malloc'd, NULL when out of memory.
 * For tests and diagnostics. */
char *tok_pcre2_pattern(const char *pattern);

/* A byte-level tokenizer.json that maps byte b to id b (GPT-2 byte-to-unicode
 * symbols as the vocab, no merges, no regex split), with special tokens
 * "<|bos|>", "<|eos|>", "<|pad|>" at ids 256, 257, 258 and a
 * TemplateProcessing post-processor adding <|bos|>; a real HF tokenizer.json
 * that the HF library loads and that gives the same ids (except that text
 * spelling "<|bos|>" etc. encodes to the special id, as HF does).  Returns
 * malloc'd JSON text, NULL when out of memory. */
char *tok_byte_level_json(void);

/*
 * Chat prompts: the text of one system message (NULL: none) and one user
 * message, up to the start of the assistant's answer, as transformers'
 * apply_chat_template(add_generation_prompt=True) renders it.  The prompt
 * already holds the BOS text where the template writes it, so encode it with
 * add_special = 0.  Recognised from tokenizer_config.json's chat_template
 * (a string, or the "default" entry of a list):
 *
 *   Llama-3 (contains "<|start_header_id|>"):
 *     [bos]<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>
 *     <|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>
 *     <|start_header_id|>assistant<|end_header_id|>\n\n
 *     with both messages trimmed of white space (Jinja's trim); [bos] is the
 *     config's bos_token where the template writes bos_token.  Llama-3.0
 *     templates leave the system block out when there is no system message.
 *     Llama-3.1/3.2/3.3 templates ("Cutting Knowledge Date" in the text)
 *     always write the system block, starting
 *     "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n".
 *   ChatML (contains "<|im_start|>", Qwen2/2.5/3):
 *     [<|im_start|>system\n{system}<|im_end|>\n]<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n
 *     untrimmed; with no system message, the template's own default system
 *     text when it writes one ("You are a helpful assistant." in Qwen2),
 *     else no system block.
 *
 * Any other template: status 2 naming what is supported; no chat_template:
 * status 2.  Tools, images and Qwen3's enable_thinking=false are not
 * rendered.
 *
 * tok_chat_format writes the date "26 Jul 2024", the date the Llama-3.x
 * templates themselves fall back to, so that a prompt does not change from
 * one day to the next; transformers renders Llama-3.2's template with today's
 * date ("%d %b %Y"), which tok_chat_format_dated takes as date.
 */
int tok_chat_format(const tokenizer *t, const char *system, const char *user, char **prompt, mpu_err *e);
int tok_chat_format_dated(const tokenizer *t, const char *system, const char *user, const char *date, char **prompt,
                          mpu_err *e);

#endif
