#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
 FILE*f=fopen(argv[1],"rb");fseek(f,0,SEEK_END);long n=ftell(f);rewind(f);char*in=malloc(n);fread(in,1,n,f);fclose(f);
 int reps=200; size_t cap=compressBound(n)+64; char*out=malloc(cap>ZSTD_compressBound(n)?cap:ZSTD_compressBound(n));
 for(int lv=1;lv<=9;lv+=(lv==1?3:(lv==4?2:3))){double t=now();size_t sz=0;for(int i=0;i<reps;i++){z_stream z={0};deflateInit2(&z,lv,Z_DEFLATED,31,8,Z_DEFAULT_STRATEGY);z.next_in=(Bytef*)in;z.avail_in=n;z.next_out=(Bytef*)out;z.avail_out=cap;deflate(&z,Z_FINISH);sz=z.total_out;deflateEnd(&z);}
  printf("gzip-%d  %7zu bytes (%.1f%%)  %.3f ms\n",lv,sz,100.0*sz/n,(now()-t)/reps*1000);}
 int zl[]={1,3,6};for(int k=0;k<3;k++){double t=now();size_t sz=0;for(int i=0;i<reps;i++)sz=ZSTD_compress(out,ZSTD_compressBound(n),in,n,zl[k]);
  printf("zstd-%d  %7zu bytes (%.1f%%)  %.3f ms\n",zl[k],sz,100.0*sz/n,(now()-t)/reps*1000);}
 ZSTD_CCtx*c=ZSTD_createCCtx();{double t=now();size_t sz=0;for(int i=0;i<reps;i++)sz=ZSTD_compressCCtx(c,out,ZSTD_compressBound(n),in,n,3);printf("zstd-3 reused ctx %zu %.3f ms\n",sz,(now()-t)/reps*1000);}
 printf("input %ld bytes\n",n);return 0;}
