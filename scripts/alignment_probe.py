"""Is there a text-image matching signal a simple model can find? (RESULTS.md)

A linear probe on the `records` and `features` artefacts of a pipeline: TF-IDF of the record's
WordPiece ids reduced to 128 dimensions, the mean of its 64 patch features (log1p, PCA to 128),
a ridge map from image to text fitted on the train positives only, and the cosine of mapped image
and text as the score. Prints the AUC of positives against their same-subcategory negatives.

    $FB_PYTHON scripts/alignment_probe.py [ARTIFACTS_DIR]    # default artifacts/fashion-real
"""
import json, numpy as np, pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score
from sklearn.decomposition import PCA
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.decomposition import TruncatedSVD
import sys
ROOT = sys.argv[1] if len(sys.argv) > 1 else 'artifacts/fashion-real'
F, R = f'{ROOT}/features/latest', f'{ROOT}/records/latest'
meta=json.load(open(F+'/meta.json')); idx=pq.read_table(F+'/index.parquet').to_pydict()
shards={}
def feat(iid):
    s,r=pos[iid]
    if s not in shards: shards[s]=np.memmap(f"{F}/shards/shard-{s:05d}.bin",dtype=np.float16,mode='r').reshape(-1,64,2048)
    return shards[s][r].astype(np.float32)
pos={i:(s,r) for i,s,r in zip(idx['image_id'],idx['shard'],idx['row'])}
def load(split):
    t=pq.read_table(f'{R}/{split}.parquet',columns=['image_id','input_ids','label']).to_pydict()
    img=np.stack([feat(i).mean(0) for i in t['image_id']])
    rows,cols=[],[]
    for k,ids in enumerate(t['input_ids']):
        for w in ids:
            if w>103: rows.append(k); cols.append(w)
    X=csr_matrix((np.ones(len(rows)),(rows,cols)),shape=(len(ids_:=t['input_ids']),30522))
    return img,X,np.array(t['label'])
ti,tx,tl=load('train'); vi,vx,vl=load('valid')
print('loaded',ti.shape,vi.shape, tl.mean(), vl.mean())
tf=TfidfTransformer().fit(tx); svd=TruncatedSVD(128,random_state=0).fit(tf.transform(tx))
T=lambda X: svd.transform(tf.transform(X))
pca=PCA(128,random_state=0).fit(np.log1p(ti))
I=lambda x: pca.transform(np.log1p(x))
# linear map on positives: ridge regression from image to text space
A,B=I(ti[tl==1]),T(tx[tl==1])
A-=0; W=np.linalg.solve(A.T@A+10*np.eye(128),A.T@B)
def score(i,x):
    p=I(i)@W; t=T(x); 
    p/=np.linalg.norm(p,axis=1,keepdims=True)+1e-9; t/=np.linalg.norm(t,axis=1,keepdims=True)+1e-9
    return (p*t).sum(1)
print('train AUC pos vs same-subcategory neg', roc_auc_score(tl,score(ti,tx)))
print('valid AUC pos vs same-subcategory neg', roc_auc_score(vl,score(vi,vx)))
