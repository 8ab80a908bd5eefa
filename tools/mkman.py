#!/usr/bin/env python3
"""mkman.py -- libasync's man pages, generated from the public headers.

The headers are the only source of the reference: every function declared
with ASYNC_API gets a section 3 page made from the comment right above its
declaration, and libasync(7) gathers the headers' overview comments, the
public types, the error codes and the environment. Nothing here knows which
functions exist; a function added to a header gets its page on the next build.

A function's comment follows one template (see include/async/chan.h):

    /*
     * name — one-line summary, which may continue on
     *                  indented lines.
     *   Free text: further description.
     *   param:         what the parameter means.
     *   Blocks:        whether and until when it blocks.
     *   Thread-safety: who may call it concurrently with what.
     *   Ownership:     who owns what before and after.
     *   Returns:       every value and errno code.
     */

A field is a line indented by two or three spaces, then a word and a colon
("Blocks:", "elem:"); the lines below it that are indented further continue
it. Several fields may share a line ("Blocks: no.  Thread-safety: any").

Usage:
    mkman.py --list [--include DIR]            the page file names, one a line
    mkman.py --outdir DIR [--include DIR] [--version V]
                                               write every page into DIR
    mkman.py --check [--include DIR]           fail when a function's comment
                                               lacks a field of the template

Pages carry the date of $SOURCE_DATE_EPOCH when it is set (reproducible
packages), else of the newest header. Python 3 standard library only.
"""

import argparse
import datetime
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_INCLUDE = os.path.join(HERE, '..', 'include')

# Fields of the template, in the order the page shows them, with their
# section titles.
SECTIONS = [
    ('Blocks', 'BLOCKING'),
    ('Thread-safety', 'THREAD SAFETY'),
    ('Ownership', 'OWNERSHIP'),
    ('Returns', 'RETURN VALUE'),
]
REQUIRED = ['Blocks', 'Thread-safety', 'Returns']

# What the library reads from the environment, for libasync(7).
ENVIRONMENT = [
    ('ASYNC_THREADS',
     'The number of workers of the default pool and of pools created with '
     'threads 0: 1 to 4096. Unset or empty: the CPUs the process may use, '
     'the smaller of its affinity mask and its cgroup v2 CPU quota '
     '(cpu.max, rounded up). Any other value is ignored with one warning '
     'line on stderr.'),
]


class Function:
    def __init__(self, name, decl, comment, header):
        self.name = name
        self.decl = decl
        self.header = header
        self.summary = ''
        self.description = []     # paragraphs
        self.params = []          # (name, text)
        self.fields = {}          # template field -> text
        self.parse(comment)

    def parse(self, comment):
        lines = comment_lines(comment)
        # Summary: "name — text" and its indented continuation lines.
        first = lines.pop(0) if lines else ''
        m = re.match(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:—|--|-)\s*(.*)', first)
        summary = [m.group(2) if m else first.strip()]
        while lines and lines[0].strip() and not field_start(lines[0]) \
                and indent(lines[0]) > 3:
            summary.append(lines.pop(0).strip())
        self.summary = ' '.join(summary).strip()
        # The rest: free text, parameter fields, template fields.
        current = None            # (kind, name, [text])
        entries = []
        for line in lines:
            if not line.strip():
                current = None
                continue
            fields = field_start(line)
            if fields:
                for name, text in fields:
                    current = ['field', name, [text] if text else []]
                    entries.append(current)
            elif current is not None and (current[0] == 'text'
                                          or indent(line) > 3):
                current[2].append(line.strip())
            else:
                current = ['text', None, [line.strip()]]
                entries.append(current)
        for kind, name, text in entries:
            body = ' '.join(text).strip()
            if kind == 'text':
                self.description.append(body)
            elif name in dict(SECTIONS):
                self.fields[name] = body
            elif name[0].islower():
                self.params.append((name, body))
            else:                   # another heading: "Choice:" and the like
                self.description.append('%s: %s' % (name, body))
        if not self.summary and self.description:
            self.summary = self.description.pop(0)

    def missing(self):
        need = list(REQUIRED)
        if re.match(r'\s*(?:ASYNC_NORETURN\s+)?void\s+[a-z_]', self.decl):
            need.remove('Returns')    # a void function may say nothing more
        return [f for f in need if f not in self.fields]


def comment_lines(comment):
    """The text of a /* */ comment, one entry a line, ' * ' stripped."""
    body = comment.strip()
    body = re.sub(r'^/\*+', '', body)
    body = re.sub(r'\*+/$', '', body)
    out = []
    for line in body.split('\n'):
        line = re.sub(r'^\s*\* ?', '', line, count=1) if line.strip().startswith('*') \
            else line.strip()
        out.append(line.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def indent(line):
    return len(line) - len(line.lstrip(' '))


FIELD = re.compile(r'([A-Za-z][A-Za-z0-9_-]*):(?:\s+|$)')


def field_start(line):
    """[(name, text)] when the line opens one field or more, else []."""
    if indent(line) < 2 or indent(line) > 3:
        return []
    text = line.strip()
    m = FIELD.match(text)
    if not m:
        return []
    out = []
    # Split "Blocks: no.  Thread-safety: any thread." at a double space
    # followed by another known field name.
    parts = re.split(r'\s{2,}(?=(?:%s):)' % '|'.join(
        re.escape(s) for s, _ in SECTIONS), text)
    for part in parts:
        pm = FIELD.match(part)
        if pm:
            out.append((pm.group(1), part[pm.end():].strip()))
        elif out:
            out[-1] = (out[-1][0], (out[-1][1] + ' ' + part).strip())
    return out


# A declaration, with the comment right above it when there is one.
DECL = re.compile(r'(?:(/\*(?:(?!\*/).)*\*/)\s*)?^(ASYNC_API\b[^;{]*;)', re.S | re.M)
TYPEDEF = re.compile(r'^typedef\b[^;{]*(?:\{[^}]*\}[^;]*)?;', re.S | re.M)


def parse_header(path):
    text = open(path, encoding='utf-8').read()
    overview = ''
    m = re.match(r'\s*(/\*.*?\*/)', text, re.S)
    if m:
        overview = m.group(1)
    functions = []
    for m in DECL.finditer(text):
        comment, decl = m.group(1) or '', m.group(2)
        # the comment must be the last one before the declaration
        comment = comment[comment.rfind('/*'):]
        decl = ' '.join(decl.split())
        name = re.search(r'([A-Za-z_][A-Za-z0-9_]*)\s*\(', decl)
        if not name:
            continue            # an exported variable: not a function
        decl = re.sub(r'\bASYNC_API\s+', '', decl)
        decl = re.sub(r'\s*ASYNC_PRINTF\([^)]*\)', '', decl)
        decl = decl.replace('ASYNC_NORETURN ', '_Noreturn ')
        functions.append(Function(name.group(1), decl, comment, path))
    typedefs = [t.group(0) for t in TYPEDEF.finditer(text)]
    return overview, functions, typedefs


def header_name(path):
    """<async/chan.h> for include/async/chan.h(.in)."""
    rel = os.path.basename(path)
    if rel.endswith('.in'):
        rel = rel[:-3]
    parent = os.path.basename(os.path.dirname(path))
    return rel if parent == 'include' else parent + '/' + rel


def collect(include):
    headers = sorted(glob.glob(os.path.join(include, 'async', '*.h')) +
                     glob.glob(os.path.join(include, 'async', '*.h.in')))
    umbrella = os.path.join(include, 'async.h')
    # the umbrella header's include order, then any header it leaves out
    order = []
    if os.path.exists(umbrella):
        order = re.findall(r'#include <(async/[^>]+)>',
                           open(umbrella, encoding='utf-8').read())
    rank = {name: i for i, name in enumerate(order)}
    headers.sort(key=lambda h: (rank.get(header_name(h), len(order)), h))
    parsed = []
    for h in headers:
        parsed.append((h,) + parse_header(h))
    names = {}
    for h, _, functions, _ in parsed:
        for f in functions:
            if f.name in names:
                sys.exit('mkman: %s declared twice (%s, %s)'
                         % (f.name, names[f.name], h))
            names[f.name] = h
    return umbrella, headers, parsed


# ------------------------------------------------------------ roff output

def esc(text):
    """Escape text for roff: backslashes, and leading dots or quotes."""
    text = text.replace('\\', '\\e')
    text = text.replace('—', '\\(em')
    return text


def para(text):
    """One paragraph of running text, broken after sentences (roff style)."""
    text = esc(' '.join(text.split()))
    lines = re.split(r'(?<=[.;])\s+(?=\S)', text)
    out = []
    for line in lines:
        if line[:1] in ('.', "'"):
            line = '\\&' + line
        out.append(line)
    return '\n'.join(out)


def verbatim(text):
    out = []
    for line in text.split('\n'):
        line = esc(line.rstrip())
        if line[:1] in ('.', "'"):
            line = '\\&' + line
        out.append(line)
    return '\n'.join(out)


def th(name, section, date, version):
    # .nh: no hyphenation, so that names such as ECANCELED stay whole
    return '.TH %s %s %s "libasync %s" "libasync Manual"\n.nh\n' % (
        name.upper(), section, date, version)


def function_page(f, siblings, date, version):
    out = [th(f.name, 3, date, version)]
    out.append('.SH NAME\n%s \\- %s\n' % (esc(f.name), para(f.summary)))
    out.append('.SH LIBRARY\nlibasync (\\-lasync; pkg\\-config package async)\n')
    out.append('.SH SYNOPSIS\n.nf\n.B #include <async.h>\n.PP\n%s\n.fi\n'
               % verbatim(f.decl))
    out.append('.PP\nDeclared in\n.IR <%s> .\n' % header_name(f.header))
    out.append('.SH DESCRIPTION\n%s\n' % para(sentence(f.summary)))
    for p in f.description:
        out.append('.PP\n%s\n' % para(p))
    if f.params:
        for name, text in f.params:
            out.append('.TP\n.I %s\n%s\n' % (esc(name), para(sentence(text))))
    for field, title in SECTIONS:
        if field in f.fields:
            out.append('.SH %s\n%s' % (title, items(f.fields[field])))
    see = sorted(s for s in siblings if s != f.name)
    refs = ['.BR %s (3)' % esc(s) for s in see] + ['.BR libasync (7)']
    out.append('.SH SEE ALSO\n' + ' ,\n'.join(refs) + '\n')
    return tidy(''.join(out))


def sentence(text):
    """Text with a capital first letter, as a section body starts."""
    return text[:1].upper() + text[1:] if text[:1].islower() else text


def items(text):
    """A field's text; a list of outcomes ("0; EINVAL (...); ENOMEM") becomes
    one indented item each."""
    parts = re.split(r';\s+(?=(?:[0-9]+|[A-Z][A-Z0-9_]{2,})\b)', text)
    if len(parts) < 2:
        return para(sentence(text)) + '\n'
    return ''.join('.IP \\(bu 2\n%s\n' % para(p.strip()) for p in parts)


def tidy(page):
    """No paragraph macro right after a section heading (mandoc warns)."""
    return re.sub(r'(\n\.SH [^\n]*\n)\.PP\n', r'\1', page)


def overview_page(umbrella, parsed, date, version):
    out = [th('libasync', 7, date, version)]
    out.append('.SH NAME\nlibasync \\- Go\'s goroutines and channels and Java\'s '
               'FutureTask for C\n')
    out.append('.SH SYNOPSIS\n.nf\n.B #include <async.h>\n.fi\n.PP\n'
               'cc app.c $(pkg\\-config \\-\\-cflags \\-\\-libs async)\n')
    if os.path.exists(umbrella):
        ov = comment_lines(parse_header(umbrella)[0])
        out.append('.SH DESCRIPTION\n')
        out.append(paragraphs(ov[1:] if ov and '—' in ov[0] else ov))
    for h, overview, functions, typedefs in parsed:
        lines = comment_lines(overview)
        title = header_name(h)
        out.append('.SH %s\n' % esc(title).upper())
        if lines and '—' in lines[0]:
            lines[0] = lines[0].split('—', 1)[1].strip()
        out.append(paragraphs(lines))
        if typedefs:
            out.append('.PP\nTypes:\n.PP\n.EX\n%s\n.EE\n'
                       % verbatim('\n'.join(typedefs)))
        if functions:
            out.append('.PP\nFunctions:\n')
            for f in functions:
                out.append('.TP\n.BR %s (3)\n%s\n' % (esc(f.name), para(f.summary)))
    out.append('.SH ENVIRONMENT\n')
    for name, text in ENVIRONMENT:
        out.append('.TP\n.B %s\n%s\n' % (name, para(text)))
    out.append('.SH SEE ALSO\n.BR pthreads (7)\n')
    return tidy(''.join(out))


def paragraphs(lines):
    """Comment lines as roff: blank lines part paragraphs; indented runs and
    list items keep their layout."""
    out, block, pre = [], [], []

    def flush():
        if block:
            out.append('.PP\n%s\n' % para(' '.join(block)))
            block.clear()
        if pre:
            out.append('.PP\n.EX\n%s\n.EE\n' % verbatim('\n'.join(pre)))
            pre.clear()

    for line in lines:
        if not line.strip():
            flush()
        elif indent(line) >= 2:
            if block:
                out.append('.PP\n%s\n' % para(' '.join(block)))
                block.clear()
            pre.append(line)
        else:
            if pre:
                flush()
            block.append(line)
    flush()
    return ''.join(out)


def page_date(headers):
    epoch = os.environ.get('SOURCE_DATE_EPOCH')
    if epoch and epoch.isdigit():
        t = int(epoch)
    else:
        t = max((os.path.getmtime(h) for h in headers), default=0)
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc) \
        .strftime('%Y-%m-%d')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--include', default=DEFAULT_INCLUDE)
    ap.add_argument('--outdir')
    ap.add_argument('--version', default='')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--headers', action='store_true',
                    help='list the headers read, one a line')
    ap.add_argument('--check', action='store_true')
    args = ap.parse_args()

    umbrella, headers, parsed = collect(args.include)
    functions = [f for _, _, fs, _ in parsed for f in fs]
    if not functions:
        sys.exit('mkman: no ASYNC_API function found under %s' % args.include)

    if args.headers:
        print('\n'.join([umbrella] + headers))
        return 0
    if args.list:
        for f in functions:
            print(f.name + '.3')
        print('libasync.7')
        return 0
    if args.check:
        bad = 0
        for f in functions:
            missing = f.missing()
            if missing or not f.summary:
                bad += 1
                print('%s: %s: comment lacks %s' % (
                    header_name(f.header), f.name,
                    ', '.join((['summary'] if not f.summary else []) +
                              ['"%s:"' % m for m in missing])))
        print('%d functions, %d with an incomplete comment'
              % (len(functions), bad))
        return 1 if bad else 0

    if not args.outdir:
        ap.error('one of --list, --headers, --check, --outdir')
    date = page_date(headers + [umbrella])
    os.makedirs(args.outdir, exist_ok=True)
    for h, _, fs, _ in parsed:
        siblings = [f.name for f in fs]
        for f in fs:
            if f.missing():
                print('mkman: warning: %s: comment lacks %s'
                      % (f.name, ', '.join(f.missing())), file=sys.stderr)
            with open(os.path.join(args.outdir, f.name + '.3'), 'w') as out:
                out.write(function_page(f, siblings, date, args.version))
    with open(os.path.join(args.outdir, 'libasync.7'), 'w') as out:
        out.write(overview_page(umbrella, parsed, date, args.version))
    return 0


if __name__ == '__main__':
    sys.exit(main())
