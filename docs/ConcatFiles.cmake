# cmake -DOUTPUT=<file> -DINPUTS=<a;b;...> -P ConcatFiles.cmake
file(WRITE ${OUTPUT} "")
foreach(input ${INPUTS})
  file(READ ${input} text)
  file(APPEND ${OUTPUT} "${text}")
endforeach()
