# Import circles between files of src/ (use/path references; `mod` declarations and doc
# links are not imports). Run from the repository root: python3 seam-deps.py
import os,re,sys,collections
root='src'
files={}
for d,_,fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p=os.path.join(d,f); files[p]=open(p).read()
def modpath(p):
    r=p[len('src/'):-3].split('/')
    if r[-1] in ('mod','lib'): r=r[:-1]
    return r
mods={tuple(modpath(p)):p for p in files}
def resolve(parts):
    # longest prefix that is a module file
    for i in range(len(parts),0,-1):
        t=tuple(parts[:i])
        if t in mods: return mods[t]
    return None
edges=collections.defaultdict(set)
for p,src in files.items():
    me=modpath(p)
    # strip comments
    code=re.sub(r'//[^\n]*','',src)
    # cut test modules
    code=re.split(r'#\[cfg\(test\)\]\s*mod tests',code)[0]
    # expand use groups roughly: capture paths like crate::a::b, super::a, self::a
    for m in re.finditer(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)',code):
        head=m.group(1); rest=m.group(2).split('::')[1:]
        isdir = p.endswith('mod.rs') or p.endswith('lib.rs')
        if head=='crate': base=[]
        elif head=='self': base=me if isdir else me  # self in file module = me
        else: # super
            base=me[:-1]
        parts=base+rest
        # handle super::super
        while parts and parts[0]=='super': parts=parts[1:]
        t=resolve(parts)
        if t and t!=p: edges[p].add(t)
    # also braces: use super::{a, b::c}
    for m in re.finditer(r'use (crate|super|self)::\{([^;]*)\};',code,re.S):
        head=m.group(1); inner=m.group(2)
        base=[] if head=='crate' else (me[:-1] if head=='super' else me)
        for item in re.split(r',',re.sub(r'\{[^}]*\}','',inner)):
            item=item.strip().split(' as ')[0]
            if not item: continue
            t=resolve(base+item.split('::'))
            if t and t!=p: edges[p].add(t)
        # nested braces like b::{x,y}
        for mm in re.finditer(r'([A-Za-z_][A-Za-z0-9_:]*)::\{',inner):
            t=resolve(base+mm.group(1).split('::'))
            if t and t!=p: edges[p].add(t)
# Tarjan
idx={};low={};st=[];on=set();sccs=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        sccs.append(comp)
for v in list(files): 
    if v not in idx: sc(v)
big=[s for s in sccs if len(s)>1]
print("file-level SCCs:",len(big))
for s in sorted(big,key=len,reverse=True): print(len(s),sorted(s))
mutual=sorted({tuple(sorted((a,b))) for a in edges for b in edges[a] if a in edges[b]})
print("mutual pairs:",len(mutual))
for a,b in mutual: print("  ",a,"<->",b)
# top-level module graph
def top(p):
    m=modpath(p); return m[0] if m else 'lib'
tedges=collections.defaultdict(set)
for a in edges:
    for b in edges[a]:
        if top(a)!=top(b): tedges[top(a)].add(top(b))
tm=sorted({tuple(sorted((a,b))) for a in list(tedges) for b in list(tedges[a]) if a in tedges.get(b,set())})
print("top-level mutual pairs:",tm)
